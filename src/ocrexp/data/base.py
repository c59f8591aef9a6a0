"""The in-memory form every dataset source returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class DigitData:
    """A labelled image dataset as uint8 arrays, before any scaling or splitting.

    Images are ``(N, H, W, C)`` uint8; labels are ``(N,)`` int64 class indices into
    ``class_names``. ``checksum`` identifies the exact content (logged with every run).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    checksum: str
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.ndim != 4 or x.dtype != np.uint8:
                raise ValueError(f"{self.name} {split} images must be uint8 (N, H, W, C), got {x.dtype} {x.shape}")
            if len(x) != len(y):
                raise ValueError(f"{self.name} {split}: {len(x)} images but {len(y)} labels")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def content_digest(*arrays: np.ndarray) -> str:
    """sha256 over dtype, shape and bytes of each array: independent of how a file stored them."""
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
