"""A run's checkpoint kept with the run on a tracking server, so that it follows the run.

With an ``http(s)`` tracking URI the machine that trains may not be the one that resumes: ``ocrexp
resume RUN`` elsewhere, or a sweep trial re-queued on another worker. After every local checkpoint
(``ocrexp.checkpoints``) its files are uploaded as the run's artifacts ``checkpoint/<name>/``, then
``checkpoint/latest.json`` names that folder: it is written last, so a kill mid-upload leaves the
pointer on the previous complete folder, which is then deleted (best effort).

One background thread uploads, never two uploads at once; a checkpoint saved while one uploads
waits, and one saved after it replaces it (only the newest matters). Training never waits for the
network, except at the run's end, which waits for the last upload. A local store (SQLite) has no
other machine to serve: nothing is uploaded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from ocrexp.sweep_protocol import NUMBER_TAG, STUDY_TAG

PREFIX = "checkpoint"
POINTER = f"{PREFIX}/latest.json"

log = logging.getLogger("ocrexp.train")


def follows_the_run(uri: str) -> bool:
    """Whether checkpoints are stored with the run: the store is a tracking server."""
    return uri.startswith(("http://", "https://"))


class CheckpointUploads:
    """Uploads a run's checkpoint folders on one thread; ``push`` after each local save."""

    def __init__(self, uri: str, run_id: str, inherited_from: str | None = None):
        import mlflow

        self.uri, self.run_id = uri, run_id
        self.inherited_from = inherited_from  # a dead trial's run whose checkpoint this run went on from
        self._client = mlflow.MlflowClient(uri)
        self._ready = threading.Condition()
        self._pending: tuple[Path, str, int] | None = None  # (staged folder, artifact folder name, epoch)
        self._busy = False
        self._closed = False
        self._current: str | None = None  # the folder latest.json names
        self._looked = False  # whether _current was read from the server (a resumed run has one)
        self._thread = threading.Thread(target=self._loop, name="checkpoint-uploads", daemon=True)
        self._thread.start()

    def push(self, folder: Path, files: tuple[str, ...], epoch: int, phase_done: bool) -> None:
        """Queue the checkpoint just saved in ``folder``: its ``files`` are hard-linked into a staging
        folder first, so the next save (which replaces them) cannot change what is uploaded."""
        # Unique over every process that trains the run: never overwrite the folder latest.json names.
        name = f"{epoch}" + ("-end" if phase_done else "") + f"-{uuid.uuid4().hex[:8]}"
        staged = Path(tempfile.mkdtemp(prefix=".upload-", dir=folder))
        for file in files:
            os.link(folder / file, staged / file)
        with self._ready:
            if self._pending is not None:  # superseded before its upload began
                shutil.rmtree(self._pending[0], ignore_errors=True)
            self._pending = (staged, name, epoch)
            self._ready.notify_all()

    def close(self) -> None:
        """Wait until the last checkpoint pushed is on the server (or failed to get there)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._thread.join()

    def delete(self) -> None:
        """Remove the run's checkpoint from the server (the run is over), and the one it went on
        from; best effort."""
        self.close()
        for run_id in filter(None, (self.run_id, self.inherited_from)):
            _delete(self.uri, run_id, PREFIX)

    def _loop(self) -> None:
        while True:
            with self._ready:
                while self._pending is None and not self._closed:
                    self._ready.wait()
                if self._pending is None:
                    return
                (staged, name, epoch), self._pending = self._pending, None
            try:
                self._upload(staged, name, epoch)
            except Exception as exc:  # the local checkpoint stands; the next epoch tries again
                log.warning("could not store the checkpoint with run %s on %s: %s", self.run_id, self.uri, exc)
            finally:
                shutil.rmtree(staged, ignore_errors=True)

    def _upload(self, staged: Path, name: str, epoch: int) -> None:
        if not self._looked:
            found = latest(self.uri, self.run_id)
            self._current, self._looked = found.split("/", 1)[1] if found else None, True
        self._client.log_artifacts(self.run_id, str(staged), f"{PREFIX}/{name}")
        self._client.log_text(self.run_id, json.dumps({"folder": name, "epoch": epoch}), POINTER)  # the switch
        previous, self._current = self._current, name
        if previous is not None:
            _delete(self.uri, self.run_id, f"{PREFIX}/{previous}")


def _delete(uri: str, run_id: str, path: str) -> None:
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        run = mlflow.MlflowClient(uri).get_run(run_id)
        get_artifact_repository(run.info.artifact_uri, tracking_uri=uri).delete_artifacts(path)
    except Exception as exc:  # an old folder left on the server costs space, not correctness
        log.warning("could not delete %s of run %s: %s", path, run_id, exc)


def pointer(uri: str, run_id: str) -> dict | None:
    """``latest.json`` of the run: its last complete checkpoint's ``folder`` and ``epoch``; None when
    the run stored none."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    if not any(f.path == POINTER for f in client.list_artifacts(run_id, PREFIX)):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(client.download_artifacts(run_id, POINTER, tmp)).read_text())


def latest(uri: str, run_id: str) -> str | None:
    """The artifact folder of the run's last complete checkpoint on the server, or None."""
    found = pointer(uri, run_id)
    return f"{PREFIX}/{found['folder']}" if found else None


def download(uri: str, run_id: str, folder: Path) -> bool:
    """Copy the run's last checkpoint from the server into ``folder``; False when it has none."""
    import mlflow

    source = latest(uri, run_id)
    if source is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        fetched = Path(mlflow.MlflowClient(uri).download_artifacts(run_id, source, tmp))
        for file in fetched.iterdir():
            os.replace(file, folder / file.name)
    return True


def trial_run(uri: str, experiment_name: str, study: str, number: int) -> str | None:
    """The id of the run of ``study``'s trial ``number`` (the sweeper tags it), or None."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.`{STUDY_TAG}` = '{study}' and tags.`{NUMBER_TAG}` = '{number}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None
