"""``ocrexp resume RUN``: go on training an interrupted run from its last checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "resume", help="go on training an interrupted run from its last checkpoint",
        description="Continue RUN (killed, interrupted or failed) in the same MLflow run, from the epoch after "
                    "its last checkpoint, with the config it was started with. Rerunning the same "
                    "ocrexp-train command does the same.")
    parser.add_argument("run_id", metavar="RUN", help="the run to resume: its id, a unique id prefix "
                        "(4+ characters, as `ocrexp runs` shows) or a unique run name")
    parser.add_argument("--tracking-uri", default=None, help="store holding the run (default: the project's)")
    parser.set_defaults(run=run)


def checkpoint_of(ref: str, uri: str) -> Path:
    """The folder holding the checkpoint of the run ``ref`` names; a one-line error when there is none."""
    from ocrexp import checkpoints
    from ocrexp.errors import OcrexpError
    from ocrexp.tracking import checkpoint_artifacts as stored
    from ocrexp.tracking.refs import resolve_run

    run = resolve_run(ref, uri)
    run_id = run.info.run_id
    folder = run.data.tags.get("ocrexp.checkpoint")
    state = checkpoints.read_state(Path(folder) / checkpoints.STATE) if folder else None
    if (state is None or state.progress.run_id != run_id) and stored.follows_the_run(uri):
        folder = fetched_checkpoint(run, uri)  # trained on another machine, or its folder is gone
        state = checkpoints.read_state(folder / checkpoints.STATE) if folder else None
    if state is None or state.progress.run_id != run_id:
        status = run.info.status
        why = "it finished" if status == "FINISHED" else f"it is {status} and its checkpoint is gone"
        raise OcrexpError(f"run {run_id} has no checkpoint to resume ({why}); "
                          f"`ocrexp reproduce {run_id}` trains its config anew.")
    return Path(folder)


def fetched_checkpoint(run, uri: str) -> Path | None:
    """Download the checkpoint that ``run`` stored on the tracking server into a checkpoint folder of
    this project; None when it stored none. Refused while the run may still be training elsewhere."""
    import shutil
    import tempfile

    from ocrexp import checkpoints
    from ocrexp.errors import OcrexpError
    from ocrexp.tracking import checkpoint_artifacts as stored
    from ocrexp.tracking.liveness import HOST_TAG, death_of

    if run.info.status == "RUNNING" and death_of(run.data.tags) is None:
        raise OcrexpError(f"run {run.info.run_id} may still be training on {run.data.tags.get(HOST_TAG, 'another machine')} "
                          "(its heartbeat is recent); stop it first, or wait until it is reported dead.")
    staged = Path(tempfile.mkdtemp(prefix="ocrexp-checkpoint-"))
    try:
        if not stored.download(uri, run.info.run_id, staged):
            return None
        folder = checkpoints.free_folder(saved_config(staged), run.info.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        for name in (checkpoints.CONFIG, checkpoints.STATE):  # the state last: it says the folder is whole
            shutil.move(staged / name, folder / name)
        return folder
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def saved_config(folder: Path):
    """The config a checkpoint folder's run was started with."""
    from omegaconf import OmegaConf

    from ocrexp import checkpoints
    from ocrexp.config import OcrexpConf, register

    register()  # the resolvers the saved config refers to
    return OmegaConf.merge(OmegaConf.structured(OcrexpConf), OmegaConf.load(folder / checkpoints.CONFIG))


def run(args: argparse.Namespace) -> int:
    from ocrexp.tracking.store import tracking_uri
    from ocrexp.train import run_experiment

    uri = args.tracking_uri or tracking_uri()
    folder = checkpoint_of(args.run_id, uri)
    cfg = saved_config(folder)
    if cfg.tracking.uri is None:
        cfg.tracking.uri = uri
    run_experiment(cfg, resume_folder=folder)
    return 0
