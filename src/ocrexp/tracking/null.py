"""``tracking=none``: a tracker with ``RunTracker``'s methods that records nothing."""

from __future__ import annotations

from typing import Any, Mapping


class NullTracker:
    """Same methods as ``RunTracker`` (a test keeps them in step); each one does nothing."""

    run_id: str | None = None
    uri: str | None = None

    def __enter__(self) -> "NullTracker":
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        pass

    def log_figure(self, fig, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        plt.close(fig)  # as RunTracker does: figures are never left open

    def log_dataset(self, data, splits) -> None:
        pass

    def log_model(self, model, input_example, *, class_names=None, pixel_scale: float = 255.0) -> str | None:
        return None

    def keras_callback(self):
        return None
