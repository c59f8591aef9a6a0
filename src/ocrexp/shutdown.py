"""Ending a finished command's process quickly.

After a run has been recorded, Python's own shutdown still frees TensorFlow's, MLflow's and pandas'
modules object by object and runs TensorFlow's C++ destructors, with nothing left to save.
:func:`exit_process` does the part of the shutdown that keeps what the command wrote (threads,
exit handlers, buffered output) and skips the teardown of the modules.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_process(status: int = 0) -> NoReturn:
    """End the process as the interpreter would, minus the teardown of its modules.

    In the interpreter's order: non-daemon threads are joined (and ``concurrent.futures``' exit hooks
    run), then every ``atexit`` handler (logging's flush and close, MLflow's, multiprocessing's),
    then the standard streams are flushed; then the process exits with ``status``. Under a profiler,
    debugger or coverage tracer (``python -m cProfile -m ocrexp.train``) it exits normally instead,
    so that the tool can write what it gathered.
    """
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(status)
    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter calls at exit
    if shutdown is not None:
        shutdown()
    else:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a pipe whose reader has gone
            pass
    os._exit(status)
