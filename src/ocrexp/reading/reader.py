"""Read whole numbers from images with a digit classifier, many images per model call.

``NumberReader(model).read(paths_or_bytes_or_arrays)`` runs two stages:

1. :func:`prepare` (no model involved): decode the image, find its glyphs and their candidate
   cuts, and normalise every candidate digit the MNIST way. Being model-free, it can run in
   worker processes (``workers=``) while the main process is still importing TensorFlow.
2. The reader classifies the candidates of consecutive images together, in calls of up to
   ``batch_size`` (never one call per digit), and picks, per glyph, the segmentation the
   classifier is surest of.

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

from ocrexp.reading.decode import DEFAULT_MAX_PIXELS, ImageSource, decode
from ocrexp.reading.errors import ImageError, NoDigitsError
from ocrexp.reading.normalize import BBOX_LEVEL, normalize_digit, to_ink
from ocrexp.reading.segment import find_glyphs, cut_lattice

#: More glyphs than this is a page of text or a noise field, not a number.
MAX_GLYPHS = 40
#: A glyph read whole at least this surely is one digit, unless it is SURELY_SEVERAL times as
#: wide as tall (single digits almost never are; the classifier's confidence on a squeezed
#: pair means nothing).
WHOLE_IS_SURE = 0.99
SURELY_SEVERAL = 1.4
#: A glyph is read as several touching digits only if every piece is read at least this surely,
MIN_PIECE_CONFIDENCE = 0.9
#: and, when it has two or more neighbours, only if it is this much wider than they typically are.
WIDER_THAN_NEIGHBOURS = 1.4


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
class _Piece:
    """A candidate digit: its row in the image's fields, its box, the lattice nodes it spans."""

    row: int
    box: tuple[int, int, int, int]
    span: tuple[int, int]


@dataclass
class Prepared:
    """One image after :func:`prepare`: per glyph, its lattice's pieces (``[0]``: the whole
    glyph) and node count; the glyphs' sizes; the candidates' normalised ``fields``."""

    scale: float
    fields: np.ndarray
    glyphs: list[tuple[list[_Piece], int]] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)


def prepare(source: ImageSource, size: int = 28, max_pixels: int = DEFAULT_MAX_PIXELS) -> Prepared:
    """Decode and segment one image into candidate digits normalised to ``size x size``."""
    gray, scale = decode(source, max_pixels=max_pixels)
    glyphs = find_glyphs(to_ink(gray))
    if len(glyphs) > MAX_GLYPHS:
        raise NoDigitsError(f"found {len(glyphs)} separate marks; expected one number of at most {MAX_GLYPHS} digits")
    fields: list[np.ndarray] = []
    prepared = Prepared(scale, np.empty(0), widths=[g.width for g in glyphs], heights=[g.height for g in glyphs])
    for glyph in glyphs:
        lattice = cut_lattice(glyph)
        pieces = []
        for ink, span in zip(lattice.pieces, lattice.spans):
            pieces.append(_Piece(len(fields), _offset(_ink_box(ink), glyph.box[0], glyph.box[1]), span))
            fields.append(normalize_digit(ink, size))
        prepared.glyphs.append((pieces, lattice.n_nodes))
    prepared.fields = np.stack(fields)
    return prepared


def prepare_all(sources: Iterable[ImageSource], size: int = 28, max_pixels: int = DEFAULT_MAX_PIXELS,
                pool: Executor | None = None) -> Iterator[Prepared | ImageError]:
    """:func:`prepare` each source, in order, with its ImageError in place of a failed one.

    With a ``pool`` (e.g. a ``ProcessPoolExecutor``) the work runs there, ahead of the consumer.
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
    """Reads numbers with a Keras digit classifier (inputs ``(N, H, W, C)`` scaled by ``1/pixel_scale``).

    ``class_names`` label the model's outputs (default ``"0"``, ``"1"``, ...). ``batch_size`` is
    the number of digit images per model call.
    """

    def __init__(self, model, *, class_names: Sequence[str] | None = None, pixel_scale: float = 255.0,
                 batch_size: int = 256, max_pixels: int = DEFAULT_MAX_PIXELS):
        height, width, channels = (int(d) for d in model.input_shape[1:])
        if height != width:
            raise ValueError(f"the digit model must take square images, not {height}x{width}")
        num_classes = int(model.output_shape[-1])
        self.model = model
        self.size, self.channels = height, channels
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for a model with {num_classes} outputs")
        self.input_gain = 255.0 / float(pixel_scale)
        self.batch_size = int(batch_size)
        self.max_pixels = int(max_pixels)
        self._call = _compiled_call(model)

    def predict_fields(self, fields: np.ndarray) -> np.ndarray:
        """Class probabilities for ``(N, size, size)`` ink fields in [0, 1], ``batch_size`` per model call."""
        x = np.asarray(fields, np.float32)[..., None] * np.float32(self.input_gain)
        if self.channels != 1:
            x = np.repeat(x, self.channels, axis=-1)
        out = [self._call(x[i:i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def read(self, sources: Iterable[ImageSource], progress: Callable[[int], None] | None = None,
             workers: int = 0) -> list[Reading | ImageError]:
        """Read every source; a failed one yields its :class:`ImageError` at its position.

        ``workers > 0`` prepares images in that many processes. ``progress(n)`` is called after
        each model call with the number of sources finished so far.
        """
        if workers <= 0:
            return list(self.iter_read(prepare_all(sources, self.size, self.max_pixels), progress))
        with worker_pool(workers) as pool:
            return list(self.iter_read(prepare_all(sources, self.size, self.max_pixels, pool), progress))

    def iter_read(self, items: Iterable[Prepared | ImageError],
                  progress: Callable[[int], None] | None = None) -> Iterator[Reading | ImageError]:
        """Readings of prepared images (from :func:`prepare_all` at this reader's ``size``), in
        order, yielded as each model call completes. Candidates of consecutive images share
        model calls of up to ``batch_size``."""
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
        prepared = [item for item in pending if isinstance(item, Prepared)]
        if not prepared:
            return list(pending)
        probs = self.predict_fields(np.concatenate([item.fields for item in prepared]))
        starts = np.cumsum([0] + [len(item.fields) for item in prepared])
        own = {id(item): probs[a:b] for item, a, b in zip(prepared, starts[:-1], starts[1:])}
        return [item if isinstance(item, ImageError) else self._decide(item, own[id(item)]) for item in pending]

    def _decide(self, prepared: Prepared, probs: np.ndarray) -> Reading:
        digits: list[DigitReading] = []
        for k, (pieces, n_nodes) in enumerate(prepared.glyphs):
            others = prepared.widths[:k] + prepared.widths[k + 1:]
            if len(others) >= 2 and prepared.widths[k] < WIDER_THAN_NEIGHBOURS * float(np.median(others)):
                pieces = pieces[:1]  # no wider than its neighbours: one digit
            too_wide_for_one = prepared.widths[k] >= SURELY_SEVERAL * prepared.heights[k]
            for piece in _likeliest(pieces, n_nodes, probs, whole_may_be_sure=not too_wide_for_one):
                cls = int(np.argmax(probs[piece.row]))
                digits.append(DigitReading(self.class_names[cls], float(probs[piece.row, cls]),
                                           tuple(int(round(v * prepared.scale)) for v in piece.box)))
        confidence = float(np.prod([d.confidence for d in digits])) if digits else 0.0
        return Reading("".join(d.digit for d in digits), confidence, tuple(digits))


def _likeliest(pieces: list[_Piece], n_nodes: int, probs: np.ndarray,
               whole_may_be_sure: bool = True) -> list[_Piece]:
    """The glyph read whole, or the chain of cut pieces the classifier is surest of.

    Classifiers are confident on fragments too, so a cut has to earn it: the whole glyph must
    read unsurely (unless it is too wide to be one digit), every piece surely, and the chain's
    joint probability must beat the whole's.
    """
    whole = pieces[0]
    p_whole = float(probs[whole.row].max())
    if len(pieces) == 1 or (whole_may_be_sure and p_whole >= WHOLE_IS_SURE):
        return [whole]
    # Best chain from node 0 to the last node through sure pieces (dynamic programming).
    best = np.full(n_nodes, -np.inf)
    best[0] = 0.0
    back: dict[int, _Piece] = {}
    for piece in sorted(pieces[1:], key=lambda p: p.span):
        p = float(probs[piece.row].max())
        start, end = piece.span
        if p >= MIN_PIECE_CONFIDENCE and best[start] + np.log(p) > best[end]:
            best[end] = best[start] + np.log(p)
            back[end] = piece
    if best[-1] <= np.log(p_whole):
        return [whole]
    chain, node = [], n_nodes - 1
    while node:
        chain.append(back[node])
        node = back[node].span[0]
    return chain[::-1]


def _ink_box(piece: np.ndarray) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the visible ink in a patch."""
    present = piece > BBOX_LEVEL
    rows, cols = np.flatnonzero(present.any(axis=1)), np.flatnonzero(present.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _offset(box: tuple[int, int, int, int], top: int, left: int) -> tuple[int, int, int, int]:
    return box[0] + left, box[1] + top, box[2] + left, box[3] + top


def _compiled_call(model) -> Callable[[np.ndarray], np.ndarray]:
    """``model(x, training=False)`` as a traced graph: a fraction of a millisecond per call on CPU."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return lambda x: np.asarray(model.predict_on_batch(x))
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    graph = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return lambda x: graph(tf.convert_to_tensor(x)).numpy()
