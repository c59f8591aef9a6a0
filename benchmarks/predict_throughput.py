"""How fast ``ocrexp predict`` reads numbers: end-to-end throughput and single-image latency.

    python benchmarks/predict_throughput.py --model runs:/<run_id>/model
    python benchmarks/predict_throughput.py --model models/digits.keras --images 1000 --repeats 3

1. Throughput: writes ``--images`` generated number images (MNIST test digits, lengths 1-6,
   the benchmark's default style) as PNG files, then times the real console command
   ``ocrexp predict --model M DIR`` as a subprocess: process start-up, TensorFlow import, model
   loading, decoding, segmentation and inference all count. Goal: 1,000 images in <= 10 s.
2. Latency, in-process: the model call for one digit (p50, goal <= 1 ms) and a whole
   ``NumberReader.read_one`` of one image (decode + segment + model).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> None:
    from ocrexp.console import quiet_libraries

    quiet_libraries()  # before TensorFlow loads: keeps its start-up lines off the terminal
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="runs:/…, models:/… or a .keras file")
    parser.add_argument("--images", type=int, default=1000, help="images for the throughput run (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs; the median is reported (default 3)")
    parser.add_argument("--calls", type=int, default=2000, help="timed single-digit model calls (default 2000)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from ocrexp.data import mnist
    from ocrexp.data.numbers import generate_numbers, save_numbers

    digits = mnist.load()
    numbers = generate_numbers(digits.x_test, digits.y_test, args.images, seed=0, length=(1, 6))
    results: dict[str, float] = {"images": args.images, "digits": sum(len(label) for label in numbers.labels)}
    with tempfile.TemporaryDirectory(prefix="ocrexp-predict-bench-") as tmp:
        folder = save_numbers(numbers, Path(tmp) / "numbers")
        walls = [_time_cli(args.model, folder) for _ in range(args.repeats)]
    results["cli_seconds_median"] = statistics.median(walls)
    results["cli_seconds_min"] = min(walls)
    results["cli_images_per_second"] = args.images / results["cli_seconds_median"]
    results.update(_latencies(args.model, numbers, args.calls))
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"ocrexp predict on {args.images} images ({results['digits']} digits), start-up included: "
          f"median {results['cli_seconds_median']:.2f} s over {args.repeats} runs "
          f"(min {results['cli_seconds_min']:.2f} s, {results['cli_images_per_second']:.0f} images/s)")
    print(f"model call, one digit:  p50 {results['model_call_ms_p50']:.3f} ms  p90 {results['model_call_ms_p90']:.3f} ms")
    print(f"read_one, one image:    p50 {results['read_one_ms_p50']:.2f} ms  p90 {results['read_one_ms_p90']:.2f} ms")


def _time_cli(model: str, folder: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([str(BIN / "ocrexp"), "predict", "--model", model, str(folder)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"ocrexp predict exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return wall


def _latencies(model_uri: str, numbers, calls: int) -> dict[str, float]:
    import numpy as np

    from ocrexp.models.io import load_model
    from ocrexp.reading.reader import NumberReader

    reader = NumberReader(load_model(model_uri))
    one = np.zeros((1, reader.size, reader.size, reader.channels), np.float32)
    one[0, 6:22, 12:16] = 1.0  # a "1"
    for _ in range(50):  # trace the graph and warm the caches
        reader._call(one)
    model_ms = []
    for _ in range(calls):
        start = time.perf_counter()
        reader._call(one)
        model_ms.append(1000 * (time.perf_counter() - start))
    read_ms = []
    for image in numbers.images[:300]:
        start = time.perf_counter()
        reader.read_one(image)
        read_ms.append(1000 * (time.perf_counter() - start))
    q = lambda values, p: float(np.percentile(values, p))  # noqa: E731
    return {"model_call_ms_p50": q(model_ms, 50), "model_call_ms_p90": q(model_ms, 90),
            "read_one_ms_p50": q(read_ms, 50), "read_one_ms_p90": q(read_ms, 90)}


if __name__ == "__main__":
    main()
