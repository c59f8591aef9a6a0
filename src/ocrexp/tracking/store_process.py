"""MLflow's SQLite store served from a second process that opens it while TensorFlow imports.

Opening MLflow's SQLite tracking store imports SQLAlchemy, alembic and MLflow's ORM models and
configures the mappers: pure-Python work in every process, which holds the interpreter lock
(threads do not hide it). A single run therefore forks this server before it imports TensorFlow:
the server opens the store on the second core while the first loads TensorFlow, and this process
reaches the store through :class:`StoreProxy`, which MLflow's tracking-store registry hands out for
``sqlite`` URIs in this process only (``ocrexp.compat.mlflow.route_sqlite_stores``). Everything else
(the ``MlflowClient``, fluent ``log_model``, local artifact files) runs here as before; only the
store's method calls cross the pipe.

The server ignores Ctrl-C and SIGTERM (the run still records that it was killed through it) and
exits when this process closes the pipe or dies. Where forking is unsafe or gains nothing (threads
running, TensorFlow or the store already imported, as in sweep workers) nothing starts and MLflow
opens the store here; ``OCREXP_STORE_PROCESS=0`` does the same on request. Only the commands
(``ocrexp-train``, ``ocrexp-eval``) fork: they call :func:`enable` first, so a library caller such as a
test session or a notebook is never forked.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from typing import Any

ENV = "OCREXP_STORE_PROCESS"
_STORE_MODULE = "mlflow.store.tracking.sqlalchemy_store"


class _Server:
    def __init__(self, pid: int, conn):
        self.pid, self.conn, self.lock = pid, conn, threading.Lock()
        self.installed = False

    def call(self, request: tuple) -> Any:
        from ocrexp.errors import OcrexpError

        with _signals_held(), self.lock:
            try:
                self.conn.send(request)
                ok, value = self.conn.recv()
            except (EOFError, OSError):
                raise OcrexpError("the process serving the MLflow store ended unexpectedly; run the same command "
                                  f"again (or set {ENV}=0 to open the store in the run's own process).") from None
        if ok:
            return value
        raise _rebuilt(value)


@contextlib.contextmanager
def _signals_held():
    """Ctrl-C and SIGTERM that arrive during a store call take effect once it is over: raised between
    the request and its reply, they left the reply in the pipe for the next call to read, and every
    later call got the one before's answer (the run could not even end as KILLED)."""
    if threading.current_thread() is not threading.main_thread():  # handlers run on the main thread only
        yield
        return
    arrived: list[int] = []
    previous = {}
    for sig in _HELD:
        if signal.getsignal(sig) is not None:  # None: a handler not set from Python, left alone
            previous[sig] = signal.signal(sig, lambda signum, _frame: arrived.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(arrived):
            signal.raise_signal(sig)  # to the handler that was in place: it raises here, or ends us


_HELD = (signal.SIGINT, signal.SIGTERM)
_server: _Server | None = None
_enabled = False


def enable() -> None:
    """Let :func:`start` fork: called by the command-line entry points, which own their process."""
    global _enabled
    _enabled = True


def start(uri: str) -> bool:
    """Fork the store server for ``uri`` when that is enabled, safe and saves time; True when one runs."""
    global _server
    if _server is not None:
        return True
    if (not _enabled or os.environ.get(ENV, "1") == "0" or not uri.startswith("sqlite:///")
            or "tensorflow" in sys.modules or _STORE_MODULE in sys.modules or threading.active_count() > 1):
        return False
    import multiprocessing.connection

    ours, theirs = multiprocessing.Pipe()
    for stream in (sys.stdout, sys.stderr):  # or the child would print their buffers a second time
        stream.flush()
    try:
        pid = os.fork()
    except OSError:  # no room for another process: open the store here, as without a server
        ours.close()
        theirs.close()
        return False
    if pid == 0:  # the server: never returns
        ours.close()
        _serve(theirs, uri)
    theirs.close()
    _server = _Server(pid, ours)
    atexit.register(stop)
    return True


def install() -> None:
    """Send this process's MLflow store calls for ``sqlite`` URIs to the server, once MLflow is imported."""
    if _server is None or _server.installed:
        return
    from ocrexp.compat.mlflow import route_sqlite_stores

    if not route_sqlite_stores(_proxy):  # MLflow moved its registry: open the store here as before
        stop()
        return
    _server.installed = True


def stop() -> None:
    """End the server (after MLflow's own exit hooks, which may still end the run through it)."""
    global _server
    server, _server = _server, None
    if server is None:
        return
    if server.installed:
        from ocrexp.compat.mlflow import restore_sqlite_stores

        restore_sqlite_stores()
    server.conn.close()
    try:
        os.waitpid(server.pid, 0)
    except ChildProcessError:
        pass


def _proxy(store_uri: str, artifact_uri: str | None = None) -> "StoreProxy":
    key = (store_uri, artifact_uri, os.getcwd())
    _server.call(("open", key, None, None))
    return StoreProxy(_server, key)


class StoreProxy:
    """Stands for MLflow's ``SqlAlchemyStore``: attribute reads and method calls run in the server."""

    def __init__(self, server: _Server, key: tuple):
        self._server, self._key = server, key
        self._callables: dict[str, bool] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in self._callables:
            kind, value = self._server.call(("getattr", self._key, name, None))
            if kind == "value":
                return value
            self._callables[name] = True

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._server.call(("call", self._key, name, (args, kwargs)))

        call.__name__ = name
        return call


# -- the server side -----------------------------------------------------------------------------
def _serve(conn, uri: str) -> None:
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stores: dict[tuple, Any] = {}
        # The expensive part, done while the run imports TensorFlow: the imports, the ORM's mappers,
        # and the store the run will ask for first (tables created under ensure_store's lock).
        from sqlalchemy.orm import configure_mappers

        from ocrexp.compat.mlflow import open_tracking_store
        from ocrexp.tracking.store import ensure_store

        __import__(_STORE_MODULE)
        configure_mappers()
        try:
            ensure_store(uri)
        except Exception:  # the run's own ensure_store reports it, through this server
            pass
        while True:
            try:
                op, key, name, payload = conn.recv()
            except (EOFError, OSError):
                break
            try:
                if op == "open":
                    if key not in stores:
                        store_uri, artifact_uri, cwd = key
                        os.chdir(cwd)  # MLflow resolves a relative default artifact root against it
                        stores[key] = open_tracking_store(store_uri, artifact_uri)
                    reply = (True, None)
                elif op == "getattr":
                    attr = getattr(stores[key], name)
                    reply = (True, ("callable", None) if callable(attr) else ("value", attr))
                else:
                    args, kwargs = payload
                    reply = (True, getattr(stores[key], name)(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
                reply = (False, _portable(exc))
            try:
                conn.send(reply)
            except Exception as exc:  # a result that cannot be pickled
                conn.send((False, _portable(exc)))
    except BaseException:  # noqa: BLE001
        status = 1
    finally:
        os._exit(status)


def _portable(exc: BaseException) -> tuple:
    """An exception as (class, args, attributes), or a RuntimeError naming it when it cannot travel."""
    import pickle

    state = (type(exc), exc.args, dict(getattr(exc, "__dict__", {})))
    try:
        pickle.dumps(state)
    except Exception:  # noqa: BLE001
        state = (RuntimeError, (f"{type(exc).__name__}: {exc}",), {})
    return state


def _rebuilt(state: tuple) -> BaseException:
    cls, args, attributes = state
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(attributes)
    return exc
