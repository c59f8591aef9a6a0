"""Whatever it is fed, the reader answers with pixels or with one of its own one-sentence errors.

Property-based (Hypothesis, derandomized: the same ~500 examples every run, about 10 s):
random bytes, random bytes behind real image signatures, damaged real images, ``.npy`` headers
promising any shape, and pixel arrays of any shape and dtype (empty, one pixel, a few pixels by
thousands, NaN and infinity) through the decoder, the segmenter and the whole model-free
``prepare``. An exception that is not an :class:`~ocrexp.reading.errors.ImageError` fails the
test. The cases the fuzzing found are kept below as explicit regression tests.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from ocrexp.reading.decode import load_image
from ocrexp.reading.errors import (
    BlankImageError,
    ImageError,
    ImageSizeError,
    NoDigitsError,
    UnreadableImageError,
    UnsupportedImageError,
)
from ocrexp.reading.normalize import normalize_digit, otsu_threshold, to_ink
from ocrexp.reading.reader import prepare
from ocrexp.reading.segment import cut_lattice, find_glyphs

# Pillow warns about the corrupt headers it reads past; the reader's answer is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.*")


def fuzz(examples: int):
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _decodes_or_refuses(data) -> None:
    """``load_image`` gives 2-D float32 grey levels in [0, 1], or raises one of the reader's errors."""
    try:
        gray = load_image(data)
    except ImageError as exc:
        event(type(exc).__name__)  # what the fuzzing reached: --hypothesis-show-statistics
        assert "\n" not in str(exc)
        return
    event("decoded")
    assert gray.ndim == 2 and gray.dtype == np.float32
    assert np.isfinite(gray).all() and 0.0 <= gray.min() and gray.max() <= 1.0


def _segments_or_refuses(pixels: np.ndarray, *, as_ink: bool) -> None:
    """The segmenter's stages run on ``pixels`` (as a grey image, or directly as ink) or raise
    one of the reader's errors."""
    try:
        ink = pixels if as_ink else to_ink(pixels)
        for glyph in find_glyphs(ink):
            normalize_digit(glyph.ink)
            for piece in cut_lattice(glyph).pieces:
                normalize_digit(piece)
    except ImageError as exc:
        event(type(exc).__name__)
        assert "\n" not in str(exc)
    else:
        event("glyphs found")


# --- encoded bytes ------------------------------------------------------------------------------

def _digit_image() -> Image.Image:
    img = Image.new("L", (32, 32), 230)
    ImageDraw.Draw(img).line([(8, 6), (24, 6), (14, 28)], fill=20, width=4)
    return img


def _encoded(fmt: str) -> bytes:
    img = _digit_image() if fmt in ("PNG", "GIF", "TIFF", "PPM") else _digit_image().convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _npy(descr: str, shape: tuple[int, ...], data: bytes) -> bytes:
    header = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}".encode("latin1")
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


SIGNATURES = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff", b"GIF89a", b"GIF87a", b"BM", b"II*\x00",
              b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"P5\n", b"P6\n", b"\x93NUMPY", b"\x93NUMPY\x01\x00"]
REAL_IMAGES = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")}


@fuzz(80)
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_raise_a_reader_error(data):
    _decodes_or_refuses(data)


@fuzz(80)
@given(st.sampled_from(SIGNATURES), st.binary(max_size=1024))
def test_random_bytes_behind_an_image_signature_decode_or_raise_a_reader_error(signature, rest):
    _decodes_or_refuses(signature + rest)


@fuzz(60)
@given(st.sampled_from(sorted(REAL_IMAGES)), st.data())
def test_damaged_real_images_decode_or_raise_a_reader_error(fmt, data):
    image = bytearray(REAL_IMAGES[fmt])
    for _ in range(data.draw(st.integers(0, 6), label="changed bytes")):
        image[data.draw(st.integers(0, len(image) - 1))] = data.draw(st.integers(0, 255))
    _decodes_or_refuses(bytes(image[:data.draw(st.integers(1, len(image)), label="kept bytes")]))


@fuzz(30)
@given(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1), st.sampled_from([1, 2, 4, 8, 16]),
       st.sampled_from([0, 2, 3, 4, 6]), st.binary(max_size=256))
def test_png_headers_claiming_any_size_decode_or_raise_a_reader_error(width, height, depth, color, rest):
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    _decodes_or_refuses(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + rest)


@fuzz(40)
@given(st.sampled_from(["|u1", "<u2", "<i8", "<f2", "<f4", "<f8", "|b1", "<c8", "<U3", "|V4", "<M8[s]"]),
       st.lists(st.integers(0, 10**8), max_size=4).map(tuple), st.binary(max_size=512))
def test_npy_headers_promising_any_shape_decode_or_raise_a_reader_error(descr, shape, data):
    _decodes_or_refuses(_npy(descr, shape, data))


# --- pixel arrays -------------------------------------------------------------------------------

# Sizes come from the example's own generator, so that large ones are as likely as small ones.
SHAPES = {
    "empty": lambda rng: tuple(rng.permutation([0, int(rng.integers(0, 40))])),
    "one pixel": lambda rng: (1, 1),
    "tiny": lambda rng: tuple(int(v) for v in rng.integers(1, 12, 2)),
    "square": lambda rng: tuple(int(v) for v in rng.integers(16, 72, 2)),
    "strip": lambda rng: (int(rng.integers(8, 24)), int(rng.integers(200, 1200))),  # a long number
    "column": lambda rng: (int(rng.integers(200, 1200)), int(rng.integers(8, 24))),
    "line": lambda rng: (int(rng.integers(1, 3)), int(rng.integers(100, 1500))),
}
DTYPES = [np.uint8, np.uint16, np.int32, np.bool_, np.float16, np.float32, np.float64]


def _strokes(rng, shape: tuple[int, int], top: float) -> np.ndarray:
    """A few pen strokes (digit-like marks) on a blank plane."""
    img = Image.new("F", (shape[1], shape[0]), 0.0)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 8))):
        points = [(float(rng.uniform(0, shape[1])), float(rng.uniform(0, shape[0]))) for _ in range(3)]
        draw.line(points, fill=top, width=int(rng.integers(1, 6)))
    return np.asarray(img, np.float64)


@st.composite
def pixel_arrays(draw, planes_only: bool = False) -> np.ndarray:
    """Arrays of a random shape and dtype holding pen strokes, noise, sparse dots, bars or one
    level, with NaN and infinities mixed into some float ones."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    plane = SHAPES[draw(st.sampled_from(sorted(SHAPES)), label="shape")](rng)
    channels = () if planes_only else draw(st.sampled_from([(), (), (1,), (3,), (4,), (2,), "1-D", "0-D"]))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    top = 1.0 if dtype == np.bool_ else float(np.iinfo(dtype).max) if dtype.kind in "ui" else draw(
        st.sampled_from([1.0, 255.0, 65535.0]))
    pattern = draw(st.sampled_from(["strokes", "strokes on paper", "noise", "sparse", "bars", "level"]))
    if pattern.startswith("strokes") and 0 not in plane:
        values = _strokes(rng, plane, top)
        if pattern == "strokes on paper":
            values = np.clip(top * 0.9 - values + rng.normal(0, top * 0.02, plane), 0, top)
    else:
        values = rng.random(plane) * top
        if pattern == "sparse":
            values = np.where(rng.random(plane) < 0.03, values, 0.0)
        elif pattern == "bars":
            values = np.where(np.arange(plane[1]) % 13 < 5, top, 0.0) * np.ones(plane)
        elif pattern == "level":
            values[:] = values.flat[0] if values.size else 0.0
    if dtype.kind == "f" and values.size:
        for special in draw(st.sampled_from([[], [], [np.nan], [np.inf], [-np.inf], [np.nan, np.inf, -np.inf], [-1.0]])):
            values.flat[rng.integers(0, values.size, max(1, values.size // 50))] = special
    if channels == "1-D":
        values = values.ravel()
    elif channels == "0-D":
        values = np.asarray(values.flat[0] if values.size else 0.0)
    elif channels:
        values = np.repeat(values[..., None], channels[0], axis=-1)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values > top / 2 if dtype == np.bool_ else values.astype(dtype))


@fuzz(60)
@given(pixel_arrays())
def test_pixel_arrays_of_any_shape_and_dtype_decode_or_raise_a_reader_error(pixels):
    _decodes_or_refuses(pixels)


@pytest.mark.slow
@fuzz(80)
@given(pixel_arrays())
def test_pixel_arrays_of_any_shape_and_dtype_are_prepared_or_raise_a_reader_error(pixels):
    try:
        prepared = prepare(pixels)
    except ImageError as exc:
        event(type(exc).__name__)
        assert "\n" not in str(exc)
        return
    event("prepared")
    assert prepared.fields.shape[1:] == (28, 28) and np.isfinite(prepared.fields).all()


@pytest.mark.slow
@fuzz(80)
@given(pixel_arrays(planes_only=True), st.booleans())
def test_the_segmenter_on_any_plane_finds_glyphs_or_raises_a_reader_error(pixels, as_ink):
    _segments_or_refuses(pixels, as_ink=as_ink)


# --- what the fuzzing found ---------------------------------------------------------------------

def test_an_npy_header_promising_a_huge_array_is_refused_before_allocating_it():
    # Was a MemoryError: np.load allocated the promised 800 TB before reading any data.
    with pytest.raises(UnreadableImageError, match="truncated .npy"):
        load_image(_npy("<f8", (100_000_000_000, 1000), b""))


def test_a_tiff_whose_next_page_pointer_is_corrupt_is_a_read_error():
    # Was TypeError("Missing dimensions"), raised by Pillow while counting the pages.
    tiff = bytearray(REAL_IMAGES["TIFF"])
    (ifd,) = struct.unpack_from("<I", tiff, 4)
    (entries,) = struct.unpack_from("<H", tiff, ifd)
    struct.pack_into("<I", tiff, ifd + 2 + 12 * entries, 1)  # the next page's directory "at byte 1"
    with pytest.raises(UnreadableImageError, match="TIFF data is truncated or corrupt"):
        load_image(bytes(tiff))


def test_a_truncated_npy_array_is_a_read_error():
    buf = io.BytesIO()
    np.save(buf, np.zeros((64, 64), np.uint8))
    with pytest.raises(UnreadableImageError, match="truncated .npy"):
        load_image(buf.getvalue()[:-10])


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_a_uniform_image_has_no_ink_rather_than_failing_otsu(level):
    # Was ValueError("All-NaN slice encountered"): Otsu's method had no two classes to split.
    uniform = np.full((20, 20), level, np.float32)
    with pytest.raises(BlankImageError):
        to_ink(uniform)
    with pytest.raises(NoDigitsError):
        find_glyphs(uniform)
    assert otsu_threshold(uniform) == level


def test_an_empty_image_is_a_size_error():
    # Was ValueError("zero-size array to reduction operation minimum ...").
    with pytest.raises(ImageSizeError, match="0x0"):
        to_ink(np.zeros((0, 0), np.float32))


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_levels_are_read_errors(special):
    # Were ValueError("'list' argument must have no negative elements") and "cannot convert float NaN to integer".
    pixels = np.where(np.eye(20) > 0, special, 0.8).astype(np.float32)
    for stage in (to_ink, find_glyphs, normalize_digit):
        with pytest.raises(UnreadableImageError, match="NaN or infinite"):
            stage(pixels)


def test_negative_ink_is_no_ink():
    # find_glyphs was ValueError (Otsu's histogram got negative bins); normalize_digit was
    # ZeroDivisionError when the negative ink cancelled the positive.
    stroke = np.where(np.eye(20) > 0, 1.0, -0.5).astype(np.float32)
    assert len(find_glyphs(stroke)) == 1
    ink = np.zeros((1, 20), np.float32)
    ink[0, [0, 19]], ink[0, 5] = 1.0, -2.0
    assert normalize_digit(ink).sum() > 0


@pytest.mark.parametrize("shape", [(5,), (3, 3, 3)])
def test_ink_that_is_not_a_plane_is_unsupported(shape):
    # Were RuntimeError("structure and input must have equal rank") and ValueError from unpacking.
    with pytest.raises(UnsupportedImageError, match="2-D"):
        find_glyphs(np.zeros(shape, np.float32))
    with pytest.raises(UnsupportedImageError, match="2-D"):
        to_ink(np.zeros(shape, np.float32))
