"""Cut an image of a number into glyphs (one or more digits each), left to right.

1. Marks: connected components (``scipy.ndimage.label``) of the ink, by hysteresis: faint ink
   counts where it touches firm ink, so a pen that lightened mid-stroke does not break a digit.
2. Broken strokes: marks that overlap horizontally and nearly touch vertically are one digit (a
   "4" lifted mid-stroke); then a short mark close to a neighbour joins it (the bar of a "5"
   drawn apart from its body), unless that would make a glyph wider than one digit can be.
3. Specks: dust, and small short marks that joined nothing, are noise and are dropped.
4. Touching digits: a glyph wider than a digit usually is gets a :func:`cut_lattice` of
   candidate cuts along least-ink paths; the reader keeps the chain of pieces the classifier is
   surest of (recognition-based segmentation), scoring every piece in the same model call.

Uneven spacing costs nothing: gaps are never compared with each other. Sizes are relative to
the number's own digits, so the scale of the image does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

from ocrexp.reading.errors import NoDigitsError
from ocrexp.reading.normalize import BBOX_LEVEL, otsu_threshold, pixel_plane

_EIGHT_CONNECTED = np.ones((3, 3), bool)
# Lengths are fractions of the number's typical digit height; areas, of its largest mark's.
#: 1. Faint ink (this fraction of the firm-ink threshold) counts when it touches firm ink.
HYSTERESIS_LOW = 0.4
#: 2. Marks overlapping horizontally by MERGE_OVERLAP of the narrower one, at most STACK_GAP
#: apart vertically, are one digit. A mark shorter than FRAGMENT_HEIGHT (and not dust) within
#: ATTACH_DISTANCE of a neighbour joins it if the result is at most MAX_DIGIT_WIDTH wide.
MERGE_OVERLAP = 0.5
STACK_GAP = 0.3
FRAGMENT_HEIGHT = 0.6
ATTACH_DISTANCE = 0.35
MAX_DIGIT_WIDTH = 1.4
#: 3. Dust is smaller than FRAGMENT_AREA; a speck is smaller than SPECK_AREA and SPECK_HEIGHT.
FRAGMENT_AREA = 0.025
SPECK_AREA = 0.15
SPECK_HEIGHT = 0.6
#: Nothing shorter than this many pixels is a legible digit, however alone it is.
MIN_HEIGHT = 6
#: 4. A glyph at least SPLIT_ASPECT times as wide as tall may be touching digits: it is offered
#: at most MAX_CUTS cuts, CUT_SPACING apart, leaving pieces at least MIN_PIECE_WIDTH wide.
SPLIT_ASPECT = 1.2
MAX_CUTS = 8
CUT_SPACING = 0.2
MIN_PIECE_WIDTH = 0.15


@dataclass(frozen=True)
class Glyph:
    """A mark believed to hold one or more digits.

    ``ink`` is the image's ink inside ``box`` (``(top, left, bottom, right)``, exclusive ends)
    with every other mark blanked out.
    """

    box: tuple[int, int, int, int]
    ink: np.ndarray

    @property
    def height(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def width(self) -> int:
        return self.box[3] - self.box[1]


def find_glyphs(ink: np.ndarray) -> list[Glyph]:
    """The glyphs of a number image given as ink (see :func:`~ocrexp.reading.normalize.to_ink`)."""
    ink = pixel_plane(ink, "ink")
    labels, n = _hysteresis_marks(ink)
    if n == 0:
        raise NoDigitsError("no marks found in the image")
    marks = _Marks(labels, n)
    groups = marks.join_stacked()
    groups = marks.attach_fragments(groups)
    height, biggest = marks.scale(groups)
    groups = [g for g in groups if not marks.is_speck(g, height, biggest) and marks.height(g) >= MIN_HEIGHT]
    if not groups:
        raise NoDigitsError(f"no marks of digit size (at least {MIN_HEIGHT} pixels tall) found, only specks")
    glyphs = [_cut_out(ink, labels, marks.ids[g], marks.box(g)) for g in groups]
    glyphs.sort(key=lambda g: (g.box[1] + g.box[3]) / 2)
    return glyphs


def _hysteresis_marks(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """Label marks: regions of faint ink (a pen lifting) that hold some firm ink.

    Thresholding at the firm level alone breaks faint strokes into dots; the faint level alone
    keeps faint noise. Hysteresis keeps faint pixels only where they connect to firm ones.
    """
    firm = max(otsu_threshold(ink), 0.2)
    labels, n = ndimage.label(ink > HYSTERESIS_LOW * firm, structure=_EIGHT_CONNECTED)
    if n == 0:
        return labels, 0
    has_firm = np.zeros(n + 1, bool)
    has_firm[np.unique(labels[ink > firm])] = True
    has_firm[0] = False
    keep = np.flatnonzero(has_firm)
    relabel = np.zeros(n + 1, np.int32)
    relabel[keep] = np.arange(1, len(keep) + 1)
    return relabel[labels], len(keep)


class _Marks:
    """The marks worth grouping, with their boxes and areas; a group is an array of indices
    into them (``ids`` maps an index to its label). Dust never joins anything, so it is left
    out from the start.

    Sizes are judged against the number's own digits: ``digit_height`` is the median height of
    the groups at least half as tall as the tallest (so neither a tall "1" nor the bar of a "5"
    sets the scale), ``biggest`` the largest group's ink area.
    """

    def __init__(self, labels: np.ndarray, n: int):
        self.labels = labels
        area = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
        keep = np.flatnonzero(area >= FRAGMENT_AREA * area.max())
        slices = ndimage.find_objects(labels)
        self.ids = keep + 1
        self.area = area[keep]
        self.top = np.array([slices[i][0].start for i in keep])
        self.bottom = np.array([slices[i][0].stop for i in keep])
        self.left = np.array([slices[i][1].start for i in keep])
        self.right = np.array([slices[i][1].stop for i in keep])

    def box(self, g: np.ndarray) -> tuple[int, int, int, int]:
        return int(self.top[g].min()), int(self.left[g].min()), int(self.bottom[g].max()), int(self.right[g].max())

    def height(self, g: np.ndarray) -> int:
        return int(self.bottom[g].max() - self.top[g].min())

    def scale(self, groups: list[np.ndarray]) -> tuple[float, float]:
        """``(digit_height, biggest)`` of a grouping."""
        heights = np.array([self.height(g) for g in groups], np.float64)
        return float(np.median(heights[heights >= heights.max() / 2])), max(self.area[g].sum() for g in groups)

    def join_stacked(self) -> list[np.ndarray]:
        """Unions of marks that overlap horizontally and nearly touch vertically (to a fixpoint:
        a stroke may overlap a joined group without overlapping any one of its marks)."""
        groups = [np.array([i]) for i in range(len(self.area))]
        gap = STACK_GAP * float((self.bottom - self.top).max())
        while len(groups) > 1:
            t, l_, b, r = (np.array(v) for v in zip(*(self.box(g) for g in groups)))
            x_overlap = np.minimum.outer(r, r) - np.maximum.outer(l_, l_)
            narrower = np.minimum.outer(r - l_, r - l_)
            y_gap = np.maximum.outer(t, t) - np.minimum.outer(b, b)
            joined = (x_overlap >= MERGE_OVERLAP * narrower) & (y_gap <= gap)
            n, group = connected_components(joined, directed=False)
            if n == len(groups):
                break
            groups = [np.concatenate([groups[i] for i in np.flatnonzero(group == k)]) for k in range(n)]
        return groups

    def attach_fragments(self, groups: list[np.ndarray]) -> list[np.ndarray]:
        """Join each broken-off stroke to the nearest glyph it could belong to, smallest first."""
        height, biggest = self.scale(groups)
        changed = True
        while changed and len(groups) > 1:
            changed = False
            order = sorted(range(len(groups)), key=lambda i: self.area[groups[i]].sum())
            for i in order:
                g = groups[i]
                if self.height(g) >= FRAGMENT_HEIGHT * height or self.area[g].sum() < FRAGMENT_AREA * biggest:
                    continue
                j, distance = self._nearest(groups, i, FRAGMENT_AREA * biggest)
                if j == i:
                    continue
                merged = np.concatenate([g, groups[j]])
                t, l_, b, r = self.box(merged)
                if distance <= ATTACH_DISTANCE * height and r - l_ <= MAX_DIGIT_WIDTH * max(height, b - t):
                    groups = [x for k, x in enumerate(groups) if k not in (i, j)] + [merged]
                    changed = True
                    break
        return groups

    def is_speck(self, g: np.ndarray, height: float, biggest: float) -> bool:
        """Dust, or a small short mark that joined no digit."""
        area = self.area[g].sum()
        return area < FRAGMENT_AREA * biggest or (area < SPECK_AREA * biggest and self.height(g) < SPECK_HEIGHT * height)

    def _nearest(self, groups: list[np.ndarray], i: int, min_area: float) -> tuple[int, float]:
        """The group (of at least ``min_area``) closest to group ``i`` in pixel distance."""
        here = self._pixels(groups[i])
        scored = [(k, float(cdist(here, self._pixels(g)).min()))
                  for k, g in enumerate(groups) if k != i and self.area[g].sum() >= min_area]
        return min(scored, key=lambda kd: kd[1], default=(i, np.inf))

    def _pixels(self, g: np.ndarray) -> np.ndarray:
        t, l_, b, r = self.box(g)
        return np.argwhere(np.isin(self.labels[t:b, l_:r], self.ids[g])) + (t, l_)


@dataclass(frozen=True)
class Lattice:
    """The ways to read one glyph as a row of digits.

    Cut paths split the glyph at nodes ``1 .. n_nodes - 2`` (node 0 is its left edge and the last
    node its right edge); ``pieces[k]`` is the ink between nodes ``spans[k]``. ``pieces[0]`` is
    always the whole glyph. A reading is a chain of pieces from the first node to the last.
    """

    pieces: list[np.ndarray]
    spans: list[tuple[int, int]]
    n_nodes: int


def cut_lattice(glyph: Glyph) -> Lattice:
    """Candidate cuts of a glyph wide enough to be touching digits (else just the whole glyph).

    A cut is a top-to-bottom path through the least ink (it may bend, so a slanted joint between
    touching digits is cut where they meet rather than through a stroke). Pieces between any two
    cuts no wider than one digit can be are offered; the reader scores them all in one batch.
    """
    ink, h = glyph.ink, glyph.height
    w = ink.shape[1]
    if glyph.width < SPLIT_ASPECT * h:
        return Lattice([ink], [(0, 1)], 2)
    min_w = MIN_PIECE_WIDTH * h
    paths = _least_ink_paths(ink, int(min_w), int(w - min_w) + 1,
                             count=max(1, min(MAX_CUTS, int(w / (CUT_SPACING * h)))),
                             spacing=max(2, int(CUT_SPACING * h)))
    paths.sort(key=lambda p: float(p.mean()))
    for k in range(1, len(paths)):  # cuts must not cross: each stays right of the previous one
        paths[k] = np.maximum(paths[k], paths[k - 1])
    bounds = [np.zeros(ink.shape[0], np.int64), *paths, np.full(ink.shape[0], w, np.int64)]
    last = len(bounds) - 1
    pieces, spans = [ink], [(0, last)]
    columns = np.arange(w)[None, :]
    for i in range(last):
        for j in range(i + 1, last + 1):
            if (i, j) == (0, last):
                continue
            width = float((bounds[j] - bounds[i]).mean())
            if width > MAX_DIGIT_WIDTH * h:
                break
            piece = np.where((columns >= bounds[i][:, None]) & (columns < bounds[j][:, None]), ink, 0.0)
            if width >= min_w and float(piece.max()) > BBOX_LEVEL:
                pieces.append(piece.astype(np.float32))
                spans.append((i, j))
    return Lattice(pieces, spans, last + 1)


def _cut_out(ink: np.ndarray, labels: np.ndarray, ids: np.ndarray, box: tuple[int, int, int, int]) -> Glyph:
    # Widen the thresholded marks by their anti-aliased rim, which is part of the digit's shape.
    rim = max(1, round((box[2] - box[0]) / 28))
    t, l_ = max(box[0] - rim, 0), max(box[1] - rim, 0)
    b, r = min(box[2] + rim, ink.shape[0]), min(box[3] + rim, ink.shape[1])
    region = labels[t:b, l_:r]
    mine = np.isin(region, ids)
    # ... but never into another mark: a neighbour's edge would stretch this digit's box.
    mine = ndimage.binary_dilation(mine, _EIGHT_CONNECTED, iterations=rim) & ((region == 0) | mine)
    return Glyph(box=(t, l_, b, r), ink=np.where(mine, ink[t:b, l_:r], 0.0).astype(np.float32))


def _least_ink_paths(ink: np.ndarray, start: int, stop: int, count: int, spacing: int) -> list[np.ndarray]:
    """Up to ``count`` top-to-bottom paths (one column per row, moving at most one column per
    row) inside columns [start, stop) that cross the least ink, ending ``spacing`` apart.

    Dynamic programming row by row; each row is one vectorised step.
    """
    band = ink[:, start:stop].astype(np.float64)
    h, w = band.shape
    if w < 1:
        return []
    step_cost = 0.02 * band.max()  # a slight preference for straight cuts
    total = band[0].copy()
    came_from = np.zeros((h, w), np.int8)
    for row in range(1, h):
        left = np.r_[np.inf, total[:-1]] + step_cost
        right = np.r_[total[1:], np.inf] + step_cost
        moves = np.stack([left, total, right])
        best = np.argmin(moves, axis=0)
        came_from[row] = best - 1
        total = band[row] + moves[best, np.arange(w)]
    ends: list[int] = []
    for col in np.argsort(total, kind="stable"):
        if all(abs(int(col) - e) >= spacing for e in ends):
            ends.append(int(col))
        if len(ends) == count:
            break
    paths = []
    for col in ends:
        path = np.empty(h, np.int64)
        for row in range(h - 1, -1, -1):  # backtrack: O(h) scalar steps
            path[row] = col
            col += int(came_from[row, col])
        paths.append(path + start)
    return paths
