"""Fills in the `sha256` of every bundle's manifest.toml (or of the bundles named on the command line).

Usage, from the repository root: python3 models/scripts/fill_sha256.py [bundle ...]
"""

from __future__ import annotations

import sys

from common import MODELS, fill_sha256

if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.parent.name for p in MODELS.glob("*/manifest.toml"))
    for name in names:
        print(name, fill_sha256(MODELS / name))
