"""``tracking=none``: a tracker with ``RunTracker``'s methods that records nothing."""

from __future__ import annotations

from typing import Any, Mapping


class NullTracker:
    """Same methods as ``RunTracker`` (a test keeps them in step); each one does nothing."""

    run_id: str | None = None
    experiment_id: str | None = None
    uri: str | None = None
    link: str | None = None

    def __enter__(self) -> "NullTracker":
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_history(self, history: Mapping[str, list[float]]) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        pass

    def log_figure(self, fig, artifact_file: str) -> None:
        if not callable(fig):  # a function is never drawn; a drawn figure is closed, as RunTracker does
            import matplotlib.pyplot as plt

            plt.close(fig)

    def log_dataset(self, data, splits) -> None:
        pass

    def log_evaluation_dataset(self, data, labels) -> None:
        pass

    def log_model(self, model, input_example, output_example=None, *, class_names=None,
                  pixel_scale: float = 255.0) -> str | None:
        return None

    def keras_callback(self):
        return None
