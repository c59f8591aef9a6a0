"""``ocrexp export RUN PATH``: write a run's model as ``.keras`` or legacy ``.h5``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ocrexp.errors import OcrexpError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="write a run's model to a .keras or .h5 file",
                                   description="Write the model logged with an MLflow run to a file.")
    parser.add_argument("run_id", metavar="RUN", help="the run whose model to write: its id, a unique id prefix "
                        "(4+ characters) or a unique run name; or a model URI such as models:/name/1")
    parser.add_argument("path", type=Path, help="output file: .keras (native) or .h5 (legacy HDF5)")
    parser.add_argument("--tracking-uri", default=None, help="store holding the run (default: the project's)")
    parser.set_defaults(run=run)


def export(uri: str, path: Path, tracking_uri: str | None = None) -> Path:
    """Save the model at ``uri`` to ``path`` and check the file predicts exactly like the original."""
    if path.suffix not in (".keras", ".h5"):
        raise OcrexpError(f"{path} must end in .keras (native format) or .h5 (legacy HDF5).")
    import numpy as np

    from ocrexp.models.io import load_model

    model = load_model(uri, tracking_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model.save(tmp)
    probe = np.random.default_rng(0).random((8, *model.input_shape[1:]), dtype=np.float32)
    if not np.allclose(model.predict(probe, verbose=0), load_model(str(tmp)).predict(probe, verbose=0), atol=1e-6):
        tmp.unlink()
        raise OcrexpError(f"the model reloaded from {path.suffix} predicts differently; use .keras instead.")
    tmp.replace(path)
    return path


def run(args: argparse.Namespace) -> int:
    from ocrexp.tracking.refs import resolve_model_uri
    from ocrexp.tracking.store import tracking_uri

    uri = args.run_id if ":/" in args.run_id else f"runs:/{args.run_id}/model"
    if args.path.suffix not in (".keras", ".h5"):  # before the model is fetched
        raise OcrexpError(f"{args.path} must end in .keras (native format) or .h5 (legacy HDF5).")
    uri = resolve_model_uri(uri, args.tracking_uri or tracking_uri())
    out = export(uri, args.path, args.tracking_uri)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) from {uri}")
    return 0
