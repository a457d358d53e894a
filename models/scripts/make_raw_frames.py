"""Builds models/frames/raw/: raw YUV frames (NV12, YUYV, I420) and their RGB24 reference conversion, from the
sample frames, with ffmpeg (byte-exact with Debian 12's ffmpeg 5.1). Needs no Python package, only ffmpeg.

The reference converts back with BT.601 limited range (swscale's default matrix), each chroma sample applied
unfiltered to the 2x1 or 2x2 pixels it covers (`neighbor` scaling, and `full_chroma_int`/`full_chroma_inp` so that
swscale reads chroma per pixel instead of through its default filtered upsampling) and exact rounding
(`accurate_rnd`): the conversion the runtime does. swscale spreads the chroma of an odd width over the row
proportionally rather than two pixels a sample, and its crop filter keeps sizes even, so an odd-sized frame and its
reference are cut here from even-sized ones (the odd frame keeps every chroma sample it needs: 4:2:0 and 4:2:2
chroma sizes round up).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

MODELS = Path(__file__).resolve().parent.parent
REFERENCE_FLAGS = "neighbor+accurate_rnd+full_chroma_int+full_chroma_inp"



def half(side: int) -> int:
    """A 4:2:x chroma side: half, rounded up."""
    return -(-side // 2)


def nv12_planes(width: int, height: int) -> list[tuple[int, int]]:
    return [(width, height), (half(width) * 2, half(height))]


def yuyv_planes(width: int, height: int) -> list[tuple[int, int]]:
    return [(half(width) * 4, height)]


def i420_planes(width: int, height: int) -> list[tuple[int, int]]:
    return [(width, height), (half(width), half(height)), (half(width), half(height))]


def rgb24_planes(width: int, height: int) -> list[tuple[int, int]]:
    return [(width * 3, height)]


# The runtime's name of each format: ffmpeg's name, and (row bytes, rows) of each plane at a size.
FORMATS = {"nv12": ("nv12", nv12_planes), "yuyv": ("yuyv422", yuyv_planes), "i420": ("yuv420p", i420_planes)}


def ffmpeg(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", *args], input=stdin, capture_output=True, check=True).stdout


def crop(data: bytes, planes, full: tuple[int, int], size: tuple[int, int]) -> bytes:
    """The top-left `size` (width, height) of a `full`-sized raw frame, plane by plane."""
    out = bytearray()
    offset = 0
    for (full_row, full_rows), (row, rows) in zip(planes(*full), planes(*size)):
        for y in range(rows):
            out += data[offset + y * full_row : offset + y * full_row + row]
        offset += full_row * full_rows
    assert offset == len(data), "the planes do not add up to the frame"
    return bytes(out)


def make(source: str, width: int, height: int) -> None:
    even = (width + width % 2, height + height % 2)
    name = f"{Path(source).stem}-{width}x{height}"
    out = MODELS / "frames" / "raw"
    out.mkdir(parents=True, exist_ok=True)
    for extension, (ffmpeg_format, planes) in FORMATS.items():
        scaled = ffmpeg("-i", str(MODELS / "frames" / source), "-vf", f"scale={even[0]}:{even[1]}",
                        "-pix_fmt", ffmpeg_format, "-f", "rawvideo", "-")
        rgb = ffmpeg("-f", "rawvideo", "-pix_fmt", ffmpeg_format, "-s", f"{even[0]}x{even[1]}", "-i", "-",
                     "-sws_flags", REFERENCE_FLAGS, "-pix_fmt", "rgb24", "-f", "rawvideo", "-", stdin=scaled)
        (out / f"{name}.{extension}").write_bytes(crop(scaled, planes, even, (width, height)))
        (out / f"{name}.{extension}.rgb").write_bytes(crop(rgb, rgb24_planes, even, (width, height)))


def main() -> None:
    make("astronaut.png", 160, 120)  # colourful, even size
    make("coffee.jpg", 75, 51)  # odd width and height


if __name__ == "__main__":
    main()
