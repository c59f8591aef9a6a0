"""Does the reader care how tightly a digit is cropped? Single-digit read accuracy by margin.

Generates single-digit images from MNIST test digits with the number benchmark's style and
seed, so every margin setting draws the very same glyphs (the generator draws them before the
margin), and only the paper around them changes. A tight crop (2 px) should read as well as a
generous one.

    python benchmarks/reading_margins.py --model runs:/<run_id>/model [--count 2000]
"""

from __future__ import annotations

import argparse
import os

MARGINS = (0.0, 0.1, 0.3, 0.8)  # paper around the digit, in digit heights (+2 px)


def main() -> None:
    from ocrexp.console import quiet_libraries

    quiet_libraries()  # before TensorFlow loads: keeps its start-up lines off the terminal
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="runs:/…, models:/… or a .keras file")
    parser.add_argument("--count", type=int, default=2000, help="digits per margin (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from ocrexp.data import mnist
    from ocrexp.data.numbers import NumberStyle, generate_numbers
    from ocrexp.models.io import load_model
    from ocrexp.reading.benchmark import evaluate_reading
    from ocrexp.reading.reader import NumberReader

    digits = mnist.load()
    reader = NumberReader(load_model(args.model))
    print(f"margin (digit heights)  read   failed  ({args.count} single digits, seed {args.seed})")
    for margin in MARGINS:
        numbers = generate_numbers(digits.x_test, digits.y_test, args.count, seed=args.seed, length=1,
                                   style=NumberStyle(margin=(margin, margin)))
        m = evaluate_reading(reader, numbers).metrics
        print(f"{margin:22.1f}  {100 * m['number_accuracy']:5.2f}%  {int(m['failed']):6d}")


if __name__ == "__main__":
    main()
