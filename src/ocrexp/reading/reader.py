"""Read whole numbers from images with a digit classifier, many images per model call.

``NumberReader(model).read(paths_or_bytes_or_arrays)`` runs two stages:

1. :func:`prepare` (no model involved): decode the image, find its glyphs and normalise each the
   MNIST way. Being model-free, it can run in worker processes (``workers=``), even while the
   main process is still importing TensorFlow.
2. The reader classifies the glyphs of consecutive images together, in calls of up to
   ``batch_size`` (never one call per digit). A glyph that may be touching digits (wide, and
   read unsurely or too wide for one digit) then gets its :func:`~ocrexp.reading.segment.cut_lattice`
   scored in one more call for the whole batch, and the likeliest chain of pieces wins.

A bad image yields its :class:`~ocrexp.reading.errors.ImageError` in place of a reading; the
rest are still read.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ocrexp.errors import OcrexpError
from ocrexp.reading.decode import DEFAULT_MAX_PIXELS, ImageSource, decode
from ocrexp.reading.errors import ImageError, NoDigitsError
from ocrexp.reading.normalize import BBOX_LEVEL, normalize_digit, to_ink
from ocrexp.reading.segment import SPLIT_ASPECT, Glyph, cut_lattice, find_glyphs

#: More glyphs than this is a page of text or a noise field, not a number.
MAX_GLYPHS = 40
#: A wide glyph is cut only if, with two or more neighbours, it is this much wider than they
#: typically are;
WIDER_THAN_NEIGHBOURS = 1.4
#: and only if it is read whole less surely than this, or is SURELY_SEVERAL times as wide as
#: tall (single digits almost never are; the classifier's confidence on a squeezed pair means
#: nothing);
WHOLE_IS_SURE = 0.99
SURELY_SEVERAL = 1.4
#: and then only into pieces that are each read at least this surely.
MIN_PIECE_CONFIDENCE = 0.9


@dataclass(frozen=True)
class DigitReading:
    """One digit: its class, the classifier's probability for it, and ``(left, top, right, bottom)``."""

    digit: str
    confidence: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Reading:
    """A number read from one image; ``confidence`` is the product of the digits' confidences."""

    number: str
    confidence: float
    digits: tuple[DigitReading, ...]

    def to_dict(self) -> dict:
        return {"number": self.number, "confidence": self.confidence,
                "digits": [asdict(d) for d in self.digits]}


@dataclass
class Prepared:
    """One image after :func:`prepare`: a normalised field and a box (in the image's pixels) per
    glyph, left to right, and the glyphs that may be touching digits, kept for cutting."""

    fields: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    scale: float
    cuttable: dict[int, Glyph] = field(default_factory=dict)


def prepare(source: ImageSource, size: int = 28, max_pixels: int = DEFAULT_MAX_PIXELS) -> Prepared:
    """Decode and segment one image into glyphs normalised to ``size x size`` fields."""
    gray, scale = decode(source, max_pixels=max_pixels)
    glyphs = find_glyphs(to_ink(gray))
    if len(glyphs) > MAX_GLYPHS:
        raise NoDigitsError(f"found {len(glyphs)} separate marks; expected one number of at most {MAX_GLYPHS} digits")
    widths = [g.width for g in glyphs]
    cuttable = {}
    for k, glyph in enumerate(glyphs):
        others = widths[:k] + widths[k + 1:]
        if glyph.width >= SPLIT_ASPECT * glyph.height and (
                len(others) < 2 or glyph.width >= WIDER_THAN_NEIGHBOURS * float(np.median(others))):
            cuttable[k] = glyph
    return Prepared(fields=np.stack([normalize_digit(g.ink, size) for g in glyphs]),
                    boxes=[_image_box(g.ink, g, scale) for g in glyphs], scale=scale, cuttable=cuttable)


def prepare_all(sources: Iterable[ImageSource], size: int = 28, max_pixels: int = DEFAULT_MAX_PIXELS,
                pool: Executor | None = None) -> Iterator[Prepared | ImageError]:
    """:func:`prepare` each source, in order, with its ImageError in place of a failed one.

    With a ``pool`` (see :func:`worker_pool`) the work runs there, ahead of the consumer.
    """
    task = partial(_prepare_or_error, size=size, max_pixels=max_pixels)
    if pool is None:
        return map(task, sources)
    return pool.map(task, sources, chunksize=8)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Processes for :func:`prepare_all`. Forked (fast) unless TensorFlow is already loaded here:
    forking a process that runs TensorFlow's threads is unsafe, so those are spawned."""
    method = "spawn" if "tensorflow" in sys.modules else "fork"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def _prepare_or_error(source: ImageSource, size: int, max_pixels: int) -> Prepared | ImageError:
    try:
        return prepare(source, size, max_pixels)
    except ImageError as exc:
        return exc


class NumberReader:
    """Reads numbers with a Keras classifier of square digit images, ``(S, S)`` or ``(S, S, C)``,
    whose pixels were scaled by ``1/pixel_scale`` in training.

    ``class_names`` label the model's outputs (default ``"0"``, ``"1"``, ...). ``batch_size`` is
    the number of digit images per model call.
    """

    def __init__(self, model, *, class_names: Sequence[str] | None = None, pixel_scale: float = 255.0,
                 batch_size: int = 256, max_pixels: int = DEFAULT_MAX_PIXELS):
        shape = tuple(model.input_shape[1:])
        if len(shape) not in (2, 3) or None in shape or shape[0] != shape[1]:
            raise OcrexpError(f"the digit model takes inputs of shape {shape}; reading numbers needs a model "
                              "of square images, (N, N) or (N, N, channels), such as the ones ocrexp-train makes")
        num_classes = int(model.output_shape[-1])
        self.model = model
        # channels None: the model takes (N, N) images without a channel axis
        self.size, self.channels = int(shape[0]), (int(shape[2]) if len(shape) == 3 else None)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise OcrexpError(f"{len(self.class_names)} class names for a model with {num_classes} outputs")
        self.input_gain = 255.0 / float(pixel_scale)
        self.batch_size = int(batch_size)
        self.max_pixels = int(max_pixels)
        self._call = _compiled_call(model)

    def predict_fields(self, fields: np.ndarray) -> np.ndarray:
        """Class probabilities for ``(N, size, size)`` ink fields in [0, 1], ``batch_size`` per model call."""
        x = np.asarray(fields, np.float32) * np.float32(self.input_gain)
        if self.channels is not None:
            x = np.repeat(x[..., None], self.channels, axis=-1)
        out = [self._call(x[i:i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def read(self, sources: Iterable[ImageSource], progress: Callable[[int], None] | None = None,
             workers: int = 0) -> list[Reading | ImageError]:
        """Read every source; a failed one yields its :class:`ImageError` at its position.

        ``workers > 0`` prepares images in that many processes. ``progress(n)`` is called after
        each batch with the number of sources finished so far.
        """
        if workers <= 0:
            return list(self.iter_read(prepare_all(sources, self.size, self.max_pixels), progress))
        with worker_pool(workers) as pool:
            return list(self.iter_read(prepare_all(sources, self.size, self.max_pixels, pool), progress))

    def iter_read(self, items: Iterable[Prepared | ImageError],
                  progress: Callable[[int], None] | None = None) -> Iterator[Reading | ImageError]:
        """Readings of prepared images (from :func:`prepare_all` at this reader's ``size``), in
        order, yielded batch by batch; the glyphs of consecutive images share model calls."""
        pending: list[Prepared | ImageError] = []
        rows = done = 0
        for item in items:
            if isinstance(item, Prepared):
                if item.fields.shape[1:] != (self.size, self.size):
                    raise ValueError(f"images were prepared at {item.fields.shape[1:]}, the model takes {self.size}")
                if rows and rows + len(item.fields) > self.batch_size:
                    yield from self._finish(pending)
                    done += len(pending)
                    pending, rows = [], 0
                    if progress:
                        progress(done)
                rows += len(item.fields)
            pending.append(item)
        yield from self._finish(pending)
        if progress:
            progress(done + len(pending))

    def read_one(self, source: ImageSource) -> Reading:
        """Read one image; raises its :class:`ImageError` instead of returning it."""
        (result,) = self.read([source])
        if isinstance(result, ImageError):
            raise result
        return result

    def _finish(self, pending: list[Prepared | ImageError]) -> list[Reading | ImageError]:
        """Classify a batch of images' glyphs in one call, their cut candidates in at most one more."""
        images = [item for item in pending if isinstance(item, Prepared)]
        if not images:
            return list(pending)
        probs = _split(self.predict_fields(np.concatenate([p.fields for p in images])), [len(p.fields) for p in images])
        lattices = {}  # (image, glyph) -> (lattice, its pieces' fields)
        for i, (image, p) in enumerate(zip(images, probs)):
            for k, glyph in image.cuttable.items():
                if p[k].max() < WHOLE_IS_SURE or glyph.width >= SURELY_SEVERAL * glyph.height:
                    lattice = cut_lattice(glyph)
                    if len(lattice.pieces) > 1:
                        fields = np.stack([normalize_digit(ink, self.size) for ink in lattice.pieces[1:]])
                        lattices[i, k] = (lattice, fields)
        if lattices:
            piece_probs = iter(_split(self.predict_fields(np.concatenate([f for _, f in lattices.values()])),
                                      [len(f) for _, f in lattices.values()]))
            lattices = {key: (lattice, next(piece_probs)) for key, (lattice, _) in lattices.items()}
        readings = iter(self._decide(image, p, {k: v for (j, k), v in lattices.items() if j == i})
                        for i, (image, p) in enumerate(zip(images, probs)))
        return [item if isinstance(item, ImageError) else next(readings) for item in pending]

    def _decide(self, image: Prepared, probs: np.ndarray, lattices: dict) -> Reading:
        digits: list[DigitReading] = []
        for k, box in enumerate(image.boxes):
            chain = None
            if k in lattices:
                lattice, piece_probs = lattices[k]
                glyph = image.cuttable[k]
                chain = _likeliest_chain(lattice.spans[1:], lattice.n_nodes, piece_probs.max(axis=1), beat=probs[k].max())
            if chain is None:
                digits.append(self._digit(probs[k], box))
            else:
                digits.extend(self._digit(piece_probs[j], _image_box(lattice.pieces[j + 1], glyph, image.scale))
                              for j in chain)
        confidence = float(np.prod([d.confidence for d in digits])) if digits else 0.0
        return Reading("".join(d.digit for d in digits), confidence, tuple(digits))

    def _digit(self, p: np.ndarray, box: tuple[int, int, int, int]) -> DigitReading:
        cls = int(np.argmax(p))
        return DigitReading(self.class_names[cls], float(p[cls]), box)


def _likeliest_chain(spans: list[tuple[int, int]], n_nodes: int, sure: np.ndarray, beat: float) -> list[int] | None:
    """Indices of the pieces forming the likeliest left-to-right chain across the glyph, using
    only pieces read at least MIN_PIECE_CONFIDENCE surely, if its joint probability beats
    ``beat`` (the whole glyph's); else None. Dynamic programming over the cut nodes."""
    best = np.full(n_nodes, -np.inf)
    best[0] = 0.0
    back: dict[int, int] = {}
    for j in sorted(range(len(spans)), key=lambda j: spans[j]):
        start, end = spans[j]
        if sure[j] >= MIN_PIECE_CONFIDENCE and best[start] + np.log(sure[j]) > best[end]:
            best[end] = best[start] + np.log(sure[j])
            back[end] = j
    if not np.isfinite(best[-1]) or best[-1] <= np.log(max(beat, 1e-12)):
        return None
    chain, node = [], n_nodes - 1
    while node:
        chain.append(back[node])
        node = spans[back[node]][0]
    return chain[::-1]


def _split(rows: np.ndarray, counts: list[int]) -> list[np.ndarray]:
    return np.split(rows, np.cumsum(counts)[:-1])


def _image_box(ink: np.ndarray, glyph: Glyph, scale: float) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the visible ink of a patch of ``glyph``, in source pixels."""
    present = ink > BBOX_LEVEL
    rows, cols = np.flatnonzero(present.any(axis=1)), np.flatnonzero(present.any(axis=0))
    top, left = glyph.box[0], glyph.box[1]
    box = (cols[0] + left, rows[0] + top, cols[-1] + 1 + left, rows[-1] + 1 + top)
    return tuple(int(round(v * scale)) for v in box)  # type: ignore[return-value]


def _compiled_call(model) -> Callable[[np.ndarray], np.ndarray]:
    """``model(x, training=False)`` as a traced graph: a fraction of a millisecond per call on CPU."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return lambda x: np.asarray(model.predict_on_batch(x))
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    graph = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return lambda x: graph(tf.convert_to_tensor(x)).numpy()
