"""Decode any supported image into a 2-D float32 grayscale array in [0, 1].

Pillow does the decoding (PNG, JPEG, BMP, TIFF, GIF, WebP, PNM...). Every way a file can be
unusable ends in one :mod:`ocrexp.reading.errors` exception whose message is a single sentence:
empty or truncated data, something that is not an image, an animated or multi-page image, a
pixel mode we do not read, too few pixels to hold a digit, more pixels than ``max_pixels``
(checked from the header, before any pixel is decoded, so a decompression bomb costs nothing),
or a uniform image.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from ocrexp.reading.errors import (
    BlankImageError,
    ImageSizeError,
    UnreadableImageError,
    UnsupportedImageError,
)

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]

#: Largest image (width x height) decoded at all; a 24-megapixel phone photo fits.
DEFAULT_MAX_PIXELS = 40_000_000
#: Longest side the reader works at; larger images are reduced while decoding (JPEG draft mode).
WORKING_MAX_SIDE = 2048
#: Smallest side that can hold a legible digit.
MIN_SIDE = 8
#: Grey-level spread (on a 0-1 scale) below which an image counts as uniform.
MIN_CONTRAST = 1 / 32

_GRAY_MODES = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_NPY_MAGIC = b"\x93NUMPY"


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_side: int | None = WORKING_MAX_SIDE) -> np.ndarray:
    """Decode ``source`` (a path, encoded bytes, ``.npy`` bytes or a pixel array) to grayscale.

    Returns a float32 ``(H, W)`` array in [0, 1] (paper and ink keep their original shades;
    polarity is decided later). Images whose longest side exceeds ``max_side`` are reduced to
    it. Raises an :class:`~ocrexp.reading.errors.ImageError` subclass when the source cannot be
    read.
    """
    return decode(source, max_pixels=max_pixels, max_side=max_side)[0]


def decode(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS,
           max_side: int | None = WORKING_MAX_SIDE) -> tuple[np.ndarray, float]:
    """:func:`load_image`, plus the factor from the returned array's pixels to the source's."""
    if isinstance(source, np.ndarray):
        gray = array_to_gray(source, max_pixels=max_pixels)
        full_side = max(gray.shape)
    else:
        data = _read_bytes(source)
        if data.startswith(_NPY_MAGIC):
            gray = array_to_gray(_load_npy(data), max_pixels=max_pixels)
            full_side = max(gray.shape)
        else:
            gray, full_side = _decode(data, max_pixels=max_pixels, max_side=max_side)
    if max_side and max(gray.shape) > max_side:
        gray = _shrink(gray, max_side)
    require_contrast(gray)
    return gray, full_side / max(gray.shape)


def require_contrast(gray: np.ndarray) -> None:
    """Raise :class:`BlankImageError` if the grey levels of ``gray`` (0-1) spread less than ``MIN_CONTRAST``."""
    if float(gray.max()) - float(gray.min()) < MIN_CONTRAST:
        raise BlankImageError(f"image is uniform (every pixel about {gray.mean():.2f} on a 0-1 scale): nothing to read")


def array_to_gray(pixels: np.ndarray, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Grayscale float32 [0, 1] from a ``(H, W)``, ``(H, W, 1|3|4)`` uint8, uint16, bool or float array."""
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        channels = a.shape[2]
    elif a.ndim == 2:
        channels = 1
    else:
        raise UnsupportedImageError(f"pixel array has shape {a.shape}; expected (H, W) or (H, W, 1|3|4)")
    _check_size(a.shape[1], a.shape[0], max_pixels)
    if a.dtype == np.bool_:
        a = a.astype(np.float32)
    elif a.dtype.kind in "ui":
        top = 255.0 if a.dtype.itemsize == 1 or a.max(initial=0) <= 255 else 65535.0
        a = a.astype(np.float32) / top
    elif a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float32))
        if a.max(initial=0) > 1.0:
            a = a / (255.0 if a.max() <= 255.0 else float(a.max()))
    else:
        raise UnsupportedImageError(f"pixel array has dtype {a.dtype}; expected integers, floats or booleans")
    if channels == 1:
        return np.clip(a.reshape(a.shape[:2]), 0.0, 1.0)
    rgb = a[..., :3] if channels >= 3 else a
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as Pillow's "L"
    if channels == 4:
        gray = _flatten_alpha(gray, a[..., 3])
    return np.clip(gray, 0.0, 1.0).astype(np.float32)


def _read_bytes(source: ImageSource) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except IsADirectoryError:
            raise UnreadableImageError("is a directory, not an image file") from None
        except OSError as exc:
            raise UnreadableImageError(f"cannot open file: {exc.strerror or exc}") from None
    if not data:
        raise UnreadableImageError("file is empty (0 bytes)")
    return data


def _load_npy(data: bytes) -> np.ndarray:
    # The header is read first: a few bytes can claim any shape, and np.load would allocate it
    # all before finding the data missing (a MemoryError, or gigabytes spent on nothing).
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(buf)
        needed, held = math.prod(shape) * dtype.itemsize, len(data) - buf.tell()
        if not dtype.hasobject and needed > held:
            raise UnreadableImageError(f"truncated .npy array data: its header promises {needed:,} bytes of "
                                       f"{dtype} values, the file holds {held:,}")
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UnreadableImageError(f"corrupt .npy array data ({exc})") from None


def _decode(data: bytes, *, max_pixels: int, max_side: int | None) -> tuple[np.ndarray, int]:
    with warnings.catch_warnings():
        # We enforce our own (lower) pixel cap below; Pillow's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageSizeError(f"image is too large to decode safely ({exc})") from None
        except Image.UnidentifiedImageError:
            raise _unidentified(data) from None
        except Exception as exc:  # Pillow's format probes raise many types on corrupt headers
            raise UnreadableImageError(f"corrupt image header ({type(exc).__name__}: {exc})") from None
        with img:
            fmt = img.format or "image"
            _check_size(img.width, img.height, max_pixels)
            try:
                frames = getattr(img, "n_frames", 1)
            except Exception as exc:  # counting frames parses every frame's header (TIFF: each IFD)
                raise UnreadableImageError(f"{fmt} data is truncated or corrupt ({exc})") from None
            if frames > 1:
                kind = "animated" if fmt in ("GIF", "PNG", "WEBP") else "multi-page"
                raise UnsupportedImageError(
                    f"{kind} {fmt} with {frames} frames; save the one frame to read as a single image"
                )
            if img.mode not in _GRAY_MODES | _ALPHA_MODES | _WIDE_MODES:
                raise UnsupportedImageError(f"{fmt} pixel mode {img.mode!r} is not supported; save it as 8-bit gray or RGB")
            full_side = max(img.size)  # before JPEG draft mode shrinks it
            if max_side and fmt == "JPEG":
                img.draft("L", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale: much faster
            try:
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_gray(img), full_side
            except Exception as exc:  # truncated or corrupt pixel data: decoders raise many types
                raise UnreadableImageError(f"{fmt} data is truncated or corrupt ({exc})") from None


def _to_gray(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in _WIDE_MODES:
        a = np.asarray(img, dtype=np.float32)
        if mode == "F":
            top = 1.0 if a.max(initial=0) <= 1.0 else float(a.max())
        else:  # 16-bit images arrive as "I;16*" or, from some encoders, as 32-bit "I"
            top = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
            top = max(top, float(a.max(initial=0)))
        return np.clip(a / top, 0.0, 1.0)
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        gray = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        return _flatten_alpha(gray, rgba[..., 3])
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def _flatten_alpha(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite over white paper; if that leaves nothing, the alpha channel itself is the ink."""
    alpha = alpha.astype(np.float32)
    if alpha.max() > 1.0:
        alpha = alpha / 255.0
    if alpha.min() >= 0.999:
        return gray.astype(np.float32)
    composite = gray * alpha + (1.0 - alpha)
    if np.ptp(composite) < MIN_CONTRAST <= np.ptp(alpha):  # e.g. white strokes on a transparent sheet
        return (1.0 - alpha).astype(np.float32)
    return composite.astype(np.float32)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageSizeError(f"image is {width}x{height} pixels; a digit needs at least {MIN_SIDE}x{MIN_SIDE}")
    if width * height > max_pixels:
        raise ImageSizeError(
            f"image is {width}x{height} = {width * height:,} pixels, over the {max_pixels:,}-pixel limit "
            "(a guard against decompression bombs); downscale it first"
        )


def _shrink(gray: np.ndarray, max_side: int) -> np.ndarray:
    img = Image.fromarray(np.ascontiguousarray(gray, dtype=np.float32))  # float32 -> mode "F"
    img.thumbnail((max_side, max_side), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.float32)


_SIGNATURES = ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def _unidentified(data: bytes) -> Exception:
    """Why Pillow could not identify ``data``: text, an image variant it cannot decode, or junk."""
    head = data[:512]
    if head.strip() and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return UnreadableImageError("not an image: the file holds text")
    for signature, fmt in _SIGNATURES:
        if data.startswith(signature):
            return UnsupportedImageError(f"{fmt} file that Pillow cannot decode: an unsupported pixel mode or "
                                         "sample layout, or a damaged header")
    return UnreadableImageError("not an image in a format Pillow can decode (PNG, JPEG, BMP, TIFF, GIF, WebP, PNM...)")
