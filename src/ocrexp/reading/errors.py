"""Why one image could not be read. Each is a one-sentence :class:`~ocrexp.errors.OcrexpError`.

A batch reader catches these per image, reports the sentence next to the file name and goes on
with the rest; anything else is a bug and is allowed to propagate.
"""

from ocrexp.errors import OcrexpError


class ImageError(OcrexpError):
    """An image could not be turned into digits."""


class UnreadableImageError(ImageError):
    """Empty, truncated or corrupt data, or a file that is not an image at all."""


class UnsupportedImageError(ImageError):
    """A real image in a form we do not read (animated, multi-page, exotic pixel mode)."""


class ImageSizeError(ImageError):
    """Too small to hold a digit, or so large it would exhaust memory (decompression bombs)."""


class BlankImageError(ImageError):
    """Nothing stands out from the background: all white, all black, or uniform."""


class NoDigitsError(ImageError):
    """The image has contrast, but no mark of digit size was found in it."""
