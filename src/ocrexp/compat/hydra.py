"""Hydra's private parts that ocrexp relies on: tested with hydra-core 1.3.8, read in the source of 1.3.2.

OmegaConf's are not needed: ``OmegaConf.to_container(resolve=False)``, ``is_interpolation`` and
``is_missing`` read a config as written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ocrexp.compat import library_changed

CHECKED = "1.3.2 to 1.3.8"

Step = Callable[[], Any]


def job_failure(ret: Any) -> BaseException | None:
    """The exception a launched job (Hydra's ``JobReturn``) ended with, or None if it completed.

    The public ``JobReturn.return_value`` re-raises it and first writes "Error executing job..." to
    the process's stderr; with several trials running on threads, hiding that line by redirecting
    stderr would hide the other threads' output too. So this reads the private field behind it,
    and raises ``CompatError`` when the field is gone. Checked with hydra-core 1.3.2 to 1.3.8.
    """
    from hydra.core.utils import JobStatus

    if ret.status == JobStatus.COMPLETED:
        return None
    try:
        return ret._return_value
    except AttributeError:
        raise library_changed("hydra-core", "ocrexp.compat.hydra.job_failure", "JobReturn._return_value",
                              CHECKED) from None


@contextmanager
def error_report_replaced(report: Callable[[Step, Callable[[Step], Any]], Any]) -> Iterator[None]:
    """Within this block, ``@hydra.main`` hands each step that fails on a user's mistake (parsing the
    command line, composing the config) to ``report(step, hydra_report)`` instead of reporting its
    errors itself; ``hydra_report(step)`` is Hydra's own report, for the errors ``report`` leaves to it.

    Hydra has no public way to change how ``@hydra.main`` reports those errors: it runs the steps
    through the private ``hydra._internal.utils.run_and_report``, which prints several lines and
    exits. When that is gone, Hydra's own report is the right thing to print (longer, but it says
    what is wrong), so the block then changes nothing, and the hook's test is what fails. Checked
    with hydra-core 1.3.2 to 1.3.8.
    """
    try:
        from hydra._internal import utils
    except ImportError:
        utils = None
    original = getattr(utils, "run_and_report", None)
    if original is None:
        yield
        return
    utils.run_and_report = lambda step: report(step, original)
    try:
        yield
    finally:
        utils.run_and_report = original


@contextmanager
def usage_errors_replaced(on_error: Callable[[str], Any]) -> Iterator[None]:
    """Within this block, a mistake in ``@hydra.main``'s own flags (``--bogus``, ``--cfg nope``) goes to
    ``on_error(message)`` instead of argparse's usage block and ``error:`` line.

    ``@hydra.main`` builds its argparse parser with ``get_args_parser``, which ``hydra.main`` imports
    from the private ``hydra._internal.utils``; the block hands ``hydra.main`` one that sets the
    parser's ``error``. When that name is gone the block changes nothing (argparse's own report is
    right, only longer) and the hook's test fails. Checked with hydra-core 1.3.2 to 1.3.8.
    """
    import sys

    module = sys.modules.get("hydra.main")
    original = getattr(module, "get_args_parser", None)
    if original is None:
        yield
        return

    def parser():
        built = original()
        built.error = on_error  # argparse reports every usage mistake through self.error(message)
        return built

    module.get_args_parser = parser
    try:
        yield
    finally:
        module.get_args_parser = original


@contextmanager
def help_lists_groups_once() -> Iterator[None]:
    """Within this block, ``--help`` lists the config groups from one copy of the config repository.

    Hydra's ``app_help`` asks its config loader for each group's options, twice per group, and every
    ask deep-copies the whole repository (ConfigStore included) through the private
    ``ConfigLoaderImpl._parse_overrides_and_create_caching_repo``; with the sweeper's nodes that is
    most of ``--help``'s time (docs/performance.md). While ``Hydra.app_help`` runs, nothing is added to
    the repository, so one copy per (config name, overrides) answers every ask the same. When either
    private name is gone the block changes nothing (help is only slower) and the hook's test fails.
    Checked with hydra-core 1.3.2 to 1.3.8.
    """
    try:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.hydra import Hydra
    except ImportError:
        yield
        return
    app_help = getattr(Hydra, "app_help", None)
    make_repo = getattr(ConfigLoaderImpl, "_parse_overrides_and_create_caching_repo", None)
    if app_help is None or make_repo is None:
        yield
        return

    def help_sharing_one_repo(self, *args, **kwargs):
        made: dict = {}

        def repo_once(loader, config_name, overrides):
            key = (id(loader), config_name, tuple(overrides))
            if key not in made:
                made[key] = make_repo(loader, config_name, overrides)
            return made[key]

        ConfigLoaderImpl._parse_overrides_and_create_caching_repo = repo_once
        try:
            return app_help(self, *args, **kwargs)
        finally:
            ConfigLoaderImpl._parse_overrides_and_create_caching_repo = make_repo

    Hydra.app_help = help_sharing_one_repo
    try:
        yield
    finally:
        Hydra.app_help = app_help
