"""``ocrexp data``: get datasets onto this machine (and, as actions are added, inspect them).

Two registries keep this open for extension without rewriting it:

- ``ACTIONS`` maps an action name (``fetch``, …) to a function that adds its parser to the
  ``data`` sub-parsers and sets ``action_run`` on it;
- ``FETCHERS`` maps a dataset name to ``"module:function"`` with the signature of
  ``ocrexp.data.mnist.fetch`` (``cache_dir, *, force, progress -> DigitData``), imported only
  when that dataset is fetched so ``ocrexp --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

FETCHERS: dict[str, str] = {
    "mnist": "ocrexp.data.mnist:fetch",
    "fashion_mnist": "ocrexp.data.fashion_mnist:fetch",
    "digits": "ocrexp.data.digits:fetch",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ocrexp data ACTION ...`` on the top-level sub-parsers."""
    parser = subparsers.add_parser("data", help="fetch datasets into the data cache",
                                   description=__doc__.splitlines()[0].replace("``", ""))
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add_action in ACTIONS.values():
        add_action(actions)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action."""
    return int(args.action_run(args) or 0)


def _add_fetch(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "fetch", help="download, verify and cache a dataset",
        description="Download a dataset, verify its checksums and convert it once into the data cache.",
    )
    parser.add_argument("dataset", choices=sorted(FETCHERS), help="which dataset")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="cache directory (default: $OCREXP_DATA_DIR or <project>/data)")
    parser.add_argument("--force", action="store_true",
                        help="download and convert again even if a valid copy exists")
    parser.set_defaults(action_run=_run_fetch)


def _run_fetch(args: argparse.Namespace) -> int:
    module_name, func_name = FETCHERS[args.dataset].split(":")
    fetch: Callable = getattr(importlib.import_module(module_name), func_name)

    def progress(message: str) -> None:
        print(f"{args.dataset}: {message} ...", file=sys.stderr, flush=True)

    data = fetch(args.data_dir, force=args.force, progress=progress)
    shape = "x".join(str(d) for d in data.input_shape)
    where = data.extra.get("path", data.source)
    print(f"{data.name}: {len(data.x_train):,} train + {len(data.x_test):,} test images ({shape}, "
          f"{data.num_classes} classes) in {where}, content sha256 {data.checksum}")
    return 0


def _add_numbers(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "numbers", help="generate a benchmark of multi-digit number images from MNIST test digits",
        description="Compose seeded images of handwritten numbers from MNIST test digits only (never "
                    "seen in training) and write them as PNGs with labels.csv.",
    )
    parser.add_argument("--count", type=int, default=1000, help="how many images (default 1000)")
    parser.add_argument("--length", default="1-6", help="digits per number: N or MIN-MAX (default 1-6)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--touching", type=float, default=0.0, metavar="P",
                        help="probability that neighbouring digits touch (default 0)")
    parser.add_argument("--no-noise", action="store_true", help="clean paper: no grain or specks")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output directory (default <data dir>/numbers/len<L>-n<count>-seed<seed>)")
    parser.set_defaults(action_run=_run_numbers)


def _run_numbers(args: argparse.Namespace) -> int:
    from ocrexp import paths
    from ocrexp.data import mnist
    from ocrexp.data.numbers import NumberStyle, generate_numbers, parse_length, save_numbers

    length = parse_length(args.length)
    style = NumberStyle(length=length, touching=args.touching, noise=not args.no_noise)
    out = args.out or paths.data_dir() / "numbers" / f"len{args.length}-n{args.count}-seed{args.seed}"
    digits = mnist.load()
    numbers = generate_numbers(digits.x_test, digits.y_test, args.count, seed=args.seed, style=style,
                               class_names=list(digits.class_names))
    print(f"{len(numbers)} number images from MNIST test digits in {save_numbers(numbers, out)}")
    return 0


ACTIONS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "fetch": _add_fetch,
    "numbers": _add_numbers,
}
