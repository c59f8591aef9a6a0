"""Does pruning find the same best model for a fraction of the training?

Runs Optuna sweeps of the tutorial CNN over ``cnn_optuna``'s search space with the same sampler, seed
and trial budget on ``debug``-sized MNIST (2,000 images) but several epochs per trial: one without
pruning (``hparams_search=cnn_optuna``) and one per pruner asked for: the shipped configs'
(``hyperband``: ``cnn_optuna_hyperband``; ``rung_rank``: ``cnn_optuna_rung_rank``) or variants listed in
``PRUNERS``. Training is deterministic; with the random sampler every sweep evaluates the same
configurations in the same order and they differ only in what pruning stops early (TPE samples others
once trials are pruned). Every job reports its validation accuracy after each epoch, so the epochs a
sweep trained are read from its study.

    python benchmarks/pruning_benchmark.py                        # 20 trials x 9 epochs, 2 at once
    python benchmarks/pruning_benchmark.py --sampler tpe --seed 1 --limit-train 12000 \
        --validation-split 0.5 --override schedule=cosine --pruners rung_rank   # as cnn_optuna_rung_rank sweeps

``--override`` goes to every sweep, the unpruned one included: ``cnn_optuna_rung_rank`` decays each
trial's learning rate (``schedule=cosine``), so its unpruned counterpart must too.

Goal: the pruned sweep's best validation accuracy is within 0.1 point of the unpruned one's,
with at most a third of the epochs. A sweep's best is the luckiest of its trials on the sweep's seed
(an unpruned sweep's best of 20 is luckier than a pruned sweep's best of the few it finished), so
``--reevaluate 7 8 9`` also trains each sweep's best configuration anew with those seeds and compares
the means: how good the configuration each sweep chose is. ``--from-summary`` does that for sweeps an
earlier run recorded, without sweeping again::

    python benchmarks/pruning_benchmark.py --from-summary mlruns/pruning-benchmark/summary.json --reevaluate 7 8 9

Results go to ``--root`` (default ``mlruns/pruning-benchmark``, git-ignored:
MLflow store, Optuna journals, Hydra outputs), and a summary to ``summary.json`` there.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


# pruners whose settings are a shipped config's (read from it, run as hparams_search=<config>)
SHIPPED = {"hyperband": "cnn_optuna_hyperband", "rung_rank": "cnn_optuna_rung_rank"}
# name -> its hydra.sweeper.pruner (None: the shipped config's)
PRUNERS: dict[str, Any] = {
    "unpruned": "none",
    "hyperband": None,
    "successive_halving": {"name": "successive_halving", "min_resource": 1, "reduction_factor": 3},
    "successive_halving_4": {"name": "successive_halving", "min_resource": 1, "reduction_factor": 4},
    "successive_halving_5": {"name": "successive_halving", "min_resource": 1, "reduction_factor": 5},
    # A trial goes on from a rung only once another trial has reached it too (bootstrap_count 1):
    # the sweep's first trials no longer run to the end unopposed. Unsafe: a trial that reaches a rung
    # first is pruned, not held, and one TPE sweep (seed 1) ended with all 20 trials pruned.
    "successive_halving_5_bootstrap": {"name": "successive_halving", "min_resource": 1, "reduction_factor": 5,
                                       "bootstrap_count": 1},
    "successive_halving_6_bootstrap": {"name": "successive_halving", "min_resource": 1, "reduction_factor": 6,
                                       "bootstrap_count": 1},
    # ocrexp's own (src/ocrexp/rung_pruner.py), shipped as cnn_optuna_rung_rank: rungs at epochs 1 and 2, the
    # top quarter goes on, re-ranked at every report. Variants: the top third or fifth, a rung at 4 too.
    "rung_rank": None,
    "rung_rank_3": {"name": "rung_rank", "min_resource": 1, "max_resource": 2, "reduction_factor": 3},
    "rung_rank_5": {"name": "rung_rank", "min_resource": 1, "max_resource": 2, "reduction_factor": 5},
    "rung_rank_to_4": {"name": "rung_rank", "min_resource": 1, "max_resource": 4, "reduction_factor": 4},
    # Every epoch, a trial goes on only while its best so far is in the top third (quarter) of the
    # finished trials' values at that epoch.
    "top_third": {"_target_": "optuna.pruners.PercentilePruner", "percentile": 33.3, "n_startup_trials": 2,
                  "n_warmup_steps": 0},
    "top_quarter": {"_target_": "optuna.pruners.PercentilePruner", "percentile": 25, "n_startup_trials": 2,
                    "n_warmup_steps": 0},
}


def pruner_spec(name: str) -> Any:
    """What ``hydra.sweeper.pruner`` is for pruner ``name``."""
    if PRUNERS[name] is None:
        from omegaconf import OmegaConf

        path = REPO / "conf" / "hparams_search" / f"{SHIPPED[name]}.yaml"
        return OmegaConf.to_container(OmegaConf.load(path).hydra.sweeper.pruner)
    return PRUNERS[name]


def overrides(name: str) -> list[str]:
    """The command-line overrides that select pruner ``name``."""
    if PRUNERS[name] is None:
        return [f"hparams_search={SHIPPED[name]}"]
    spec = PRUNERS[name]
    if isinstance(spec, str):
        return ["hparams_search=cnn_optuna", f"hydra.sweeper.pruner={spec}"]
    return ["hparams_search=cnn_optuna", "hydra.sweeper.pruner={" + ", ".join(f"{k}: {v}" for k, v in spec.items()) + "}"]


def training(args: argparse.Namespace, seed: int) -> list[str]:
    """The overrides every job of a sweep (and every re-evaluation) trains with."""
    return ["debug=fast", f"trainer.epochs={args.epochs}", "trainer.deterministic=true", f"seed={seed}",
            f"dataset.limit_train={args.limit_train}", f"dataset.validation_split={args.validation_split}",
            "tracking.log_model=false", "tracking.log_plots=false", *args.override]


def run_train(args: argparse.Namespace, cmd: list[str], log_name: str) -> float:
    """``python -m ocrexp.train`` with ``cmd`` in the benchmark's root; returns its wall time in seconds."""
    env = {**os.environ, "OCREXP_ROOT": str(args.root),
           "OCREXP_DATA_DIR": os.environ.get("OCREXP_DATA_DIR", str(REPO / "data"))}
    print("$ ocrexp.train", " ".join(cmd), flush=True)
    start = time.monotonic()
    with open(args.root / f"{log_name}.log", "w") as log:
        subprocess.run([sys.executable, "-m", "ocrexp.train", *cmd], cwd=args.root, env=env, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    return time.monotonic() - start


def run_sweep(args: argparse.Namespace, variant: str, study: str) -> float:
    """One ``ocrexp-train -m`` sweep; returns its wall time in seconds."""
    return run_train(args, [
        "-m", *overrides(variant), *training(args, args.seed), "tracking.experiment_name=pruning-benchmark",
        f"hydra.sweeper.sampler={args.sampler}", f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.n_jobs={args.jobs}", f"hydra.sweeper.study_name={study}",
    ], study)


def reevaluate(args: argparse.Namespace, row: dict) -> list[float]:
    """The objective (best validation accuracy over the epochs) of ``row``'s best configuration trained
    anew once per ``--reevaluate`` seed: other weights, batches and validation images than the sweep's."""
    import mlflow

    values = []
    for seed in args.reevaluate:
        name = f"{row['study']}-seed{seed}"
        params = [f"{key}={value}" for key, value in row["best_params"].items()]
        run_train(args, [*training(args, seed), *params, f"tracking.experiment_name={REEVALUATION}",
                         f"run_name={name}"], name)
        client = mlflow.MlflowClient(f"sqlite:///{args.root / 'mlruns' / 'mlflow.db'}")
        experiment = client.get_experiment_by_name(REEVALUATION).experiment_id
        (run,) = client.search_runs([experiment], f"tags.mlflow.runName = '{name}'", max_results=1,
                                    order_by=["attributes.start_time DESC"])
        values.append(max(m.value for m in client.get_metric_history(run.info.run_id, "val_accuracy")))
    return values


REEVALUATION = "pruning-benchmark-reevaluation"


def summarize(args: argparse.Namespace, study_name: str, seconds: float) -> dict:
    import optuna

    from ocrexp.pruning import open_storage

    storage = open_storage(str(args.root / "mlruns" / "optuna" / f"{study_name}.journal"))
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    # A pruner can stop every trial (successive halving with bootstrap_count did): no best then.
    best = study.best_trial if any(t.state.name == "COMPLETE" for t in trials) else None
    return {
        "study": study_name, "trials": len(trials), "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "best_val_accuracy": best.value if best else None, "best_trial": best.number if best else None,
        "best_params": best.params if best else None, "wall_s": round(seconds, 1),
    }


def within(gap: float) -> bool:
    """``gap`` is at most 0.1 point. Keras logs accuracies as float32: 15 of 15,000 images (exactly 0.1
    point) comes out as 0.100005, so compare at the resolution of the values, not of the floats."""
    return round(gap, 4) <= 0.1


def points(gap: float) -> str:
    """``gap`` (unpruned minus pruned, in points) as words."""
    return f"{gap:.2f} points below" if gap >= 0 else f"{-gap:.2f} points above"


def compare_anew(args: argparse.Namespace, rows: list[dict]) -> None:
    """Each sweep's best configuration trained anew with every ``--reevaluate`` seed: is a pruned
    sweep's choice as good as the unpruned one's, apart from the luck of the sweep's own seed?"""
    for r in rows:
        if r["best_params"] is not None:
            r["reevaluated"] = {str(seed): value for seed, value in zip(args.reevaluate, reevaluate(args, r))}
    plain = statistics.mean(rows[0]["reevaluated"].values())
    seeds = " ".join(map(str, args.reevaluate))
    print(f"\neach sweep's best configuration trained anew with seeds {seeds} (mean best val accuracy):")
    for r in rows:
        if "reevaluated" not in r:
            continue
        mean = statistics.mean(r["reevaluated"].values())
        each = ", ".join(f"{v:.4f}" for v in r["reevaluated"].values())
        line = f"{r['run']:<19} {mean:.4f} ({each})"
        if r is not rows[0]:
            gap = r["reevaluated_gap_points"] = 100 * (plain - mean)
            line += f"  {points(gap)} the unpruned sweep's choice ({'goal met' if within(gap) else 'goal: <= 0.1'})"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=9, help="epochs per trial (Hyperband's max_resource)")
    parser.add_argument("--pruners", default="hyperband", help="comma list of " + ", ".join(list(PRUNERS)[1:])
                        + " ('': the unpruned sweep alone)")
    parser.add_argument("--jobs", type=int, default=2, help="trials at once")
    parser.add_argument("--sampler", default="random", help="random keeps both sweeps on the same configurations")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit-train", type=int, default=2000,
                        help="training images, --validation-split of them held out (more: a steadier ranking, slower)")
    parser.add_argument("--validation-split", type=float, default=0.2,
                        help="of --limit-train; more validation images make 0.1 point more than noise")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hydra override for every sweep, e.g. schedule=cosine (repeatable)")
    parser.add_argument("--root", type=Path, default=REPO / "mlruns" / "pruning-benchmark")
    parser.add_argument("--reuse-unpruned", type=Path, default=None,
                        help="summary.json of an earlier run with the same settings: take its unpruned sweep")
    parser.add_argument("--reevaluate", type=int, nargs="+", default=[], metavar="SEED",
                        help="train each sweep's best configuration anew with these seeds and compare the means")
    parser.add_argument("--from-summary", type=Path, default=None,
                        help="summary.json of an earlier run: no sweeps, its sweeps and settings (for --reevaluate)")
    args = parser.parse_args()
    rows = []
    if args.from_summary:
        earlier = json.loads(args.from_summary.read_text())
        rows = earlier["runs"]
        for key in ("epochs", "seed", "limit_train"):
            setattr(args, key, int(earlier["args"][key]))
        args.validation_split = float(earlier["args"]["validation_split"])
        args.override = ast.literal_eval(earlier["args"]["override"])
        args.root = Path(earlier["args"]["root"])
    args.root = args.root.resolve()
    args.root.mkdir(parents=True, exist_ok=True)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.reuse_unpruned and not rows:  # the unpruned sweep of an earlier run with the same settings
        rows.append(json.loads(args.reuse_unpruned.read_text())["runs"][0])
    new_sweeps = [] if args.from_summary else ([] if rows else ["unpruned"]) + [n for n in args.pruners.split(",") if n]
    for variant in new_sweeps:
        study = f"bench-{variant}-{stamp}"
        rows.append({"run": variant, "sampler": args.sampler, **summarize(args, study, run_sweep(args, variant, study))})

    plain = rows[0]
    print(f"\n{'run':<19} {'trials':>6} {'pruned':>6} {'epochs':>6} {'best val acc':>12} {'wall s':>7}")
    for r in rows:
        best = "none finished" if r["best_val_accuracy"] is None else f"{r['best_val_accuracy']:.4f}"
        print(f"{r['run']:<19} {r['trials']:>6} {r['pruned']:>6} {r['epochs']:>6} {best:>12} {r['wall_s']:>7}")
    for r in rows[1:]:
        r["epoch_ratio"] = r["epochs"] / plain["epochs"]
        if r["best_val_accuracy"] is None:
            print(f"{r['run']}: {r['epoch_ratio']:.0%} of the epochs, and it pruned every trial (no best)")
            continue
        r["best_gap_points"] = 100 * (plain["best_val_accuracy"] - r["best_val_accuracy"])
        epochs_ok = "goal met" if r["epoch_ratio"] <= 1 / 3 else "goal: <= 33%"
        best_ok = "goal met" if within(r["best_gap_points"]) else "goal: <= 0.1"
        print(f"{r['run']}: {r['epoch_ratio']:.0%} of the epochs ({epochs_ok}); best val accuracy "
              f"{points(r['best_gap_points'])} the unpruned best ({best_ok})")
    if args.reevaluate:
        compare_anew(args, rows)
    if args.from_summary:
        earlier["runs"] = rows
        args.from_summary.write_text(json.dumps(earlier, indent=2))
        print(f"summary: {args.from_summary}")
        return
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows}
    (args.root / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary: {args.root / 'summary.json'}")


if __name__ == "__main__":
    main()
