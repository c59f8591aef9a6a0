"""``ocrexp predict``: read the number in each image with a trained digit model.

    ocrexp predict --model runs:/<run_id>/model scan.png form_dir/      # scan.png  4721  (0.98)
    ocrexp predict --model models:/digits/3 --json '*.jpg' > readings.json
    ocrexp predict --model models:/digits@champion scan.png            # a registered model's alias

Arguments are files, directories (their image files, sorted) and glob patterns. Every image is
read even when some fail; a failed one gets one ``PATH  error: ...`` line on stderr (or an
``error`` field with ``--json``). Exit status: 0 when every image was read, 3 when some could not
be (2 is reserved for usage and model errors).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

from ocrexp.commands._args import at_least

EXIT_SOME_FAILED = 3
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp",
                            ".pgm", ".ppm", ".pbm", ".pnm"})
#: The MNIST field size, assumed while the model is still loading (redone if it differs).
FIELD_SIZE = 28
#: Worker processes prepare images when there are this many, up to MAX_WORKERS (default: cores).
POOL_FROM = 16
MAX_WORKERS = 8
#: Show a progress bar (on a terminal) from this many images on.
PROGRESS_FROM = 50


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ocrexp predict``."""
    parser = subparsers.add_parser(
        "predict", help="read the numbers in images with a trained model",
        description=__doc__.split("\n\n")[0].replace("``", "") + " Exit status: 0 all read, "
                    f"{EXIT_SOME_FAILED} some could not be read, 2 usage or model error.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, directories or glob patterns")
    parser.add_argument("--model", required=True, metavar="URI_OR_PATH",
                        help="runs:/<run_id>/model, models:/<name>/<version>, models:/<name>@<alias>, "
                             "or a .keras/.h5 file")
    parser.add_argument("--json", action="store_true", help="print one JSON array with digits, boxes and errors")
    parser.add_argument("--batch-size", type=at_least(1), default=256, metavar="N",
                        help="digit images per model call (default 256)")
    parser.add_argument("-r", "--recursive", action="store_true", help="descend into subdirectories")
    parser.add_argument("--workers", type=at_least(0), default=None, metavar="N",
                        help=f"processes decoding and segmenting images (default: one per core from "
                             f"{POOL_FROM} images on; 0: all in this process)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store for runs:/ and models:/ URIs (default: $MLFLOW_TRACKING_URI or the project's)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Read every image named by ``args.paths``; print readings; return the exit status."""
    from ocrexp.reading.errors import ImageError, UnreadableImageError
    from ocrexp.reading.reader import prepare_all, worker_pool

    targets = expand_paths(args.paths, recursive=args.recursive)
    files = [t for t in targets if not isinstance(t, tuple)]
    failed = 0
    records = []
    for name, problem in (t for t in targets if isinstance(t, tuple)):
        failed += 1
        records.append(_emit(name, UnreadableImageError(problem), args.json))
    workers = _workers(args.workers, len(files))
    pool = worker_pool(workers) if workers else None
    try:
        # Images are decoded and segmented in the pool while TensorFlow loads here; the field
        # size is the MNIST one until the model says otherwise.
        items = prepare_all(files, FIELD_SIZE, pool=pool)
        reader = _load_reader(args)
        if reader.size != FIELD_SIZE:
            items = prepare_all(files, reader.size, pool=pool)
        bar = _ProgressBar(len(files)) if len(files) >= PROGRESS_FROM and sys.stderr.isatty() else None
        for path, result in zip(files, reader.iter_read(items, progress=bar.show if bar else None)):
            if bar:
                bar.clear()
            failed += isinstance(result, ImageError)
            records.append(_emit(str(path), result, args.json))
        if bar:
            bar.clear()
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    if args.json:
        json.dump(records, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return EXIT_SOME_FAILED if failed else 0


def _load_reader(args: argparse.Namespace):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ocrexp.models.io import load_model
    from ocrexp.reading.reader import NumberReader

    return NumberReader(load_model(args.model, args.tracking_uri), batch_size=args.batch_size)


def _workers(requested: int | None, images: int) -> int:
    if requested is not None:
        return requested
    return min(os.cpu_count() or 1, MAX_WORKERS) if images >= POOL_FROM else 0


def expand_paths(args: list[str], recursive: bool = False) -> list[Path | tuple[str, str]]:
    """Files to read, in order, without duplicates; ``(arg, problem)`` for arguments that name none.

    A named file is read whatever its suffix; in directories and glob matches only image files
    (by suffix) are taken.
    """
    out: list[Path | tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(path)

    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = _images_in(path, recursive)
            if not found:
                out.append((arg, "directory holds no image files (" + ", ".join(sorted(IMAGE_SUFFIXES)) + ")"))
            for p in found:
                add(p)
        elif path.exists():
            add(path)
        elif glob.has_magic(arg):
            matches = [Path(m) for m in sorted(glob.glob(arg, recursive=True))]
            files = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES]
            for d in (m for m in matches if m.is_dir()):
                files.extend(_images_in(d, recursive))
            if not files:
                out.append((arg, "no image files match this pattern"))
            for p in files:
                add(p)
        else:
            out.append((arg, "no such file or directory"))
    return out


def _images_in(directory: Path, recursive: bool) -> list[Path]:
    entries = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _emit(name: str, result, as_json: bool) -> dict:
    """Print the plain-text line for one image now (JSON is printed at the end); return its record."""
    from ocrexp.reading.errors import ImageError

    if isinstance(result, ImageError):
        if not as_json:
            print(f"{name}  error: {result}", file=sys.stderr, flush=True)
        return {"path": name, "error": str(result)}
    if not as_json:
        print(f"{name}  {result.number}  ({result.confidence:.2f})", flush=True)
    return {"path": name, **result.to_dict()}






class _ProgressBar:
    """A one-line bar on stderr, redrawn in place."""

    def __init__(self, total: int, width: int = 30):
        self.total, self.width = total, width

    def show(self, done: int) -> None:
        filled = self.width * done // max(self.total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} images")
        sys.stderr.flush()

    def clear(self) -> None:
        sys.stderr.write("\r" + " " * (self.width + 30) + "\r")
        sys.stderr.flush()
