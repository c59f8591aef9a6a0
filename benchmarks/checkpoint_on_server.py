"""What storing each epoch's checkpoint with the run on a tracking server costs a run.

An ``mlflow server`` on 127.0.0.1 (SQLite, ``--serve-artifacts``) records every run; alternately a
run stores its checkpoints there (the default with an ``http`` tracking URI) and one does not (the
same process with ``tracking.checkpoint_artifacts.follows_the_run`` answering False). Per epoch:
the run's ``train_time_s`` (every epoch's fit, save and validation) over its epochs; whole: the
command's wall time, which includes the wait for the last upload.

    python benchmarks/checkpoint_on_server.py [--repeats 3] [overrides ...]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from throwaway_project import new_project

BIN = Path(sys.executable).parent
TRAIN = "import sys; from ocrexp.train import main; sys.argv[0] = 'ocrexp-train'; main()"
NO_UPLOAD = ("import ocrexp.tracking.checkpoint_artifacts as c; c.follows_the_run = lambda uri: False; "
             + TRAIN)
DEFAULT = ["debug=fast", "dataset.limit_train=6000", "trainer.epochs=4", "tracking.log_model=false",
           "tracking.log_plots=false"]


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                             "--serve-artifacts", "--artifacts-destination", str(root / "served")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5):
                return proc, uri
        except OSError:
            time.sleep(0.2)
    raise SystemExit("mlflow server did not answer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    import mlflow

    root, env = new_project("ocrexp-ckpt-server-")
    server, uri = start_server(root)
    env["MLFLOW_TRACKING_URI"] = uri
    client = mlflow.MlflowClient(uri)
    epochs = next(int(o.split("=")[1]) for o in args.overrides if o.startswith("trainer.epochs="))
    results: dict[str, list[tuple[float, float]]] = {"stored": [], "not stored": []}
    try:
        for i in range(args.repeats):
            for name, code in (("stored", TRAIN), ("not stored", NO_UPLOAD)):
                start = time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", code, *args.overrides, f"run_name={name}-{i}"],
                                      cwd=root, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - start
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr[-3000:])
                (run,) = client.search_runs([client.get_experiment_by_name("ocrexp").experiment_id],
                                            f"attributes.run_name = '{name}-{i}'")
                per_epoch = run.data.metrics["train_time_s"] / epochs
                results[name].append((per_epoch, wall))
                print(f"{name:>10}: {per_epoch:.3f} s/epoch, {wall:.1f} s whole", flush=True)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    for name, values in results.items():
        epoch, wall = [v[0] for v in values], [v[1] for v in values]
        print(f"{name:>10}: per epoch min {min(epoch):.3f} median {statistics.median(epoch):.3f} s; "
              f"whole min {min(wall):.1f} median {statistics.median(wall):.1f} s")


if __name__ == "__main__":
    main()
