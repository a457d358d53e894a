"""Builds models/frames/: sample camera frames taken from photos that ship inside PyPI wheels.

Sources: scikit-image 0.26.0 (skimage/data) and matplotlib 3.11.2 (mpl-data/sample_data/grace_hopper.jpg).
JPEG files that ship as JPEG are copied byte for byte; PNG photos that we want as JPEG are re-encoded at quality 90.
"""

from __future__ import annotations

import io
import shutil

from PIL import Image

from common import MODELS, pip_download, temp_dir, wheel_member

SKIMAGE = "scikit-image==0.26.0"
MATPLOTLIB = "matplotlib==3.11.2"


def main() -> None:
    tmp = temp_dir("frames-")
    sk = pip_download(SKIMAGE, tmp)
    mpl = pip_download(MATPLOTLIB, tmp)
    out = MODELS / "frames"
    out.mkdir(parents=True, exist_ok=True)

    def sk_bytes(name: str) -> bytes:
        return wheel_member(sk, f"skimage/data/{name}")

    def save_jpeg(png: bytes, name: str) -> None:
        Image.open(io.BytesIO(png)).convert("RGB").save(out / name, quality=90)

    # Byte-for-byte copies.
    (out / "astronaut.png").write_bytes(sk_bytes("astronaut.png"))  # 512x512 RGB, one face
    (out / "camera.png").write_bytes(sk_bytes("camera.png"))  # 512x512 gray, one face (in profile-ish)
    (out / "rocket.jpg").write_bytes(sk_bytes("rocket.jpg"))  # 640x427, no faces
    grace = wheel_member(mpl, "mpl-data/sample_data/grace_hopper.jpg")
    (out / "grace_hopper.jpg").write_bytes(grace)  # 512x600, one face
    # PNG photos re-encoded as JPEG (quality 90).
    save_jpeg(sk_bytes("chelsea.png"), "cat.jpg")  # 451x300, a tabby cat
    save_jpeg(sk_bytes("coffee.png"), "coffee.jpg")  # 600x400, a cup of coffee
    # A composite with two faces: the astronaut and Grace Hopper side by side on a black canvas, 1024x600.
    a = Image.open(io.BytesIO(sk_bytes("astronaut.png"))).convert("RGB")
    g = Image.open(io.BytesIO(grace)).convert("RGB")
    canvas = Image.new("RGB", (a.width + g.width, max(a.height, g.height)), (0, 0, 0))
    canvas.paste(a, (0, (canvas.height - a.height) // 2))
    canvas.paste(g, (a.width, 0))
    canvas.save(out / "people.jpg", quality=90)
    shutil.rmtree(tmp, ignore_errors=True)
    for p in sorted(out.iterdir()):
        im = Image.open(p)
        print(p.name, im.size, im.mode, p.stat().st_size)


if __name__ == "__main__":
    main()
