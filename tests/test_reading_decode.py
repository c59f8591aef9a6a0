"""Decoding every supported image form to grayscale, and one clear error for every bad one."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ocrexp.reading import decode as dec
from ocrexp.reading.errors import (
    BlankImageError,
    ImageError,
    ImageSizeError,
    UnreadableImageError,
    UnsupportedImageError,
)
from ocrexp.reading.normalize import normalize_digit, to_ink


def _digit_ink(size: int = 64) -> np.ndarray:
    """A thick "7" as ink in [0, 1] on a square canvas."""
    img = Image.new("L", (size, size), 0)
    from PIL import ImageDraw

    ImageDraw.Draw(img).line([(size * 0.25, size * 0.2), (size * 0.75, size * 0.2), (size * 0.45, size * 0.85)],
                             fill=255, width=max(3, size // 10))
    return np.asarray(img, np.float32) / 255.0


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _paper(ink: np.ndarray) -> np.ndarray:
    """Dark ink on light paper, uint8 (how scans look)."""
    return np.rint(235 - 205 * ink).astype(np.uint8)


def _variants() -> dict[str, bytes]:
    ink = _digit_ink()
    gray = Image.fromarray(_paper(ink))
    rgb = Image.merge("RGB", (gray, gray, gray))
    rgba = Image.fromarray(np.dstack([np.zeros_like(ink, np.uint8)] * 3 + [np.rint(ink * 255).astype(np.uint8)]), "RGBA")
    sixteen = Image.fromarray(_paper(ink).astype(np.uint16) * 257)  # uint16 -> mode "I;16"
    return {
        "png-gray": _encode(gray, "PNG"),
        "png-rgb": _encode(rgb, "PNG"),
        "png-rgba-transparent-paper": _encode(rgba, "PNG"),
        "png-palette": _encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG"),
        "png-bilevel": _encode(gray.point(lambda v: 255 if v > 128 else 0).convert("1"), "PNG"),
        "png-16bit": _encode(sixteen, "PNG"),
        "jpeg-gray": _encode(gray, "JPEG", quality=92),
        "jpeg-rgb": _encode(rgb, "JPEG", quality=92),
        "bmp": _encode(rgb, "BMP"),
        "tiff-gray": _encode(gray, "TIFF"),
        "tiff-16bit": _encode(sixteen, "TIFF"),
        "tiff-cmyk": _encode(rgb.convert("CMYK"), "TIFF"),
        "gif-single-frame": _encode(gray, "GIF"),
        "webp": _encode(rgb, "WEBP", lossless=True),
    }


@pytest.mark.parametrize("name", sorted(_variants()))
def test_every_format_and_mode_decodes_to_the_same_digit(name):
    expected = normalize_digit(_digit_ink())
    gray = dec.load_image(_variants()[name])
    assert gray.ndim == 2 and gray.dtype == np.float32 and 0.0 <= gray.min() and gray.max() <= 1.0
    got = normalize_digit(to_ink(gray))
    assert np.abs(got - expected).mean() < 0.03, name


@pytest.mark.parametrize("shape,dtype", [((64, 64), np.uint8), ((64, 64, 1), np.uint8), ((64, 64, 3), np.uint8),
                                         ((64, 64, 4), np.uint8), ((64, 64), np.uint16), ((64, 64), np.float32)])
def test_pixel_arrays_decode_like_files(shape, dtype):
    ink = _digit_ink()
    paper = _paper(ink).astype(np.float64) / 255.0
    if dtype == np.uint16:
        arr = np.rint(paper * 65535).astype(np.uint16)
    elif dtype == np.float32:
        arr = paper.astype(np.float32)
    else:
        arr = np.rint(paper * 255).astype(np.uint8)
    if len(shape) == 3:
        arr = np.dstack([arr] * shape[2])
        if shape[2] == 4:
            arr[..., 3] = 255
    got = normalize_digit(to_ink(dec.load_image(arr)))
    assert np.abs(got - normalize_digit(ink)).mean() < 0.02


def test_npy_bytes_decode_as_an_array():
    buf = io.BytesIO()
    np.save(buf, _paper(_digit_ink()))
    assert dec.load_image(buf.getvalue()).shape == (64, 64)


def test_light_ink_on_dark_paper_gives_the_same_ink_as_dark_on_light():
    ink = _digit_ink()
    dark_on_light = to_ink(dec.load_image(_paper(ink)))
    light_on_dark = to_ink(dec.load_image(255 - _paper(ink)))
    assert np.abs(dark_on_light - light_on_dark).max() < 0.02
    assert dark_on_light[ink > 0.9].min() > 0.9 and dark_on_light[ink == 0].max() < 0.05


def test_large_images_are_reduced_and_report_the_scale_back():
    big = np.kron(_paper(_digit_ink()), np.ones((50, 50), np.uint8))  # 3200 x 3200
    gray, scale = dec.decode(_encode(Image.fromarray(big), "PNG"))
    assert max(gray.shape) == dec.WORKING_MAX_SIDE
    assert scale == pytest.approx(3200 / dec.WORKING_MAX_SIDE)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (a decompression bomb's calling card)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IEND\xaeB`\x82")


def _tiff_two_samples() -> bytes:
    """A valid little-endian TIFF with two 8-bit samples per pixel and no alpha: no Pillow mode."""
    w = h = 16
    data = bytes(w * h * 2)
    entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 2, 0), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 0), (277, 3, 1, 2), (278, 3, 1, h), (279, 4, 1, len(data))]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at, data_at = 8 + ifd_size, 8 + ifd_size + 4
    body = b""
    for tag, typ, count, value in entries:
        value = {258: bits_at, 273: data_at}.get(tag, value)
        body += struct.pack("<HHIHH", tag, typ, count, value, 0) if typ == 3 and count == 1 else struct.pack("<HHII", tag, typ, count, value)
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)) + body + b"\x00" * 4 + struct.pack("<HH", 8, 8) + data


def _animated_gif() -> bytes:
    frames = [Image.fromarray(_paper(_digit_ink())), Image.fromarray(255 - _paper(_digit_ink()))]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


BAD_INPUTS = {
    "empty file": (b"", UnreadableImageError, "empty"),
    "truncated png": (_encode(Image.fromarray(_paper(_digit_ink())), "PNG")[:200], UnreadableImageError, "truncated"),
    "text renamed .png": (b"Dear customer,\nthe meter reading is 4721.\n", UnreadableImageError, "text"),
    "random bytes": (bytes(range(256)) * 4, UnreadableImageError, "not an image"),
    "1x1 pixel": (_encode(Image.new("L", (1, 1), 0), "PNG"), ImageSizeError, "1x1"),
    "decompression bomb": (_png_header_only(100_000, 100_000), ImageSizeError, "limit"),
    "all white": (_encode(Image.new("L", (64, 64), 255), "PNG"), BlankImageError, "uniform"),
    "all black": (_encode(Image.new("RGB", (64, 64), 0), "JPEG"), BlankImageError, "uniform"),
    "animated gif": (_animated_gif(), UnsupportedImageError, "animated GIF with 2 frames"),
    "unsupported mode": (_tiff_two_samples(), UnsupportedImageError, "TIFF"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_one_clear_sentence(case):
    data, error, words = BAD_INPUTS[case]
    with pytest.raises(error) as info:
        dec.load_image(data)
    message = str(info.value)
    assert words in message and "\n" not in message and len(message) < 200
    assert isinstance(info.value, ImageError)


def test_decompression_bomb_is_refused_before_any_pixel_is_decoded(monkeypatch):
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels were decoded"))
    with pytest.raises(ImageSizeError):
        dec.load_image(_png_header_only(50_000, 50_000))


def test_our_pixel_cap_refuses_an_image_pillow_would_open(monkeypatch):
    # 8,000 x 8,000 = 64 M pixels: over our 40 M cap, under Pillow's own limit (89 M warns, 179 M refuses),
    # so the refusal here is ours, from the header alone.
    assert dec.DEFAULT_MAX_PIXELS < 8_000 * 8_000 < Image.MAX_IMAGE_PIXELS
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels were decoded"))
    with pytest.raises(ImageSizeError) as info:
        dec.load_image(_png_header_only(8_000, 8_000))
    assert "8000x8000" in str(info.value) and "decode safely" not in str(info.value)


def test_missing_file_and_directory_are_read_errors(tmp_path):
    with pytest.raises(UnreadableImageError, match="cannot open"):
        dec.load_image(tmp_path / "nope.png")
    with pytest.raises(UnreadableImageError, match="directory"):
        dec.load_image(tmp_path)


def test_pixel_cap_is_configurable():
    with pytest.raises(ImageSizeError):
        dec.load_image(_paper(_digit_ink()), max_pixels=1000)
