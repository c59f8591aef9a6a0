"""Hydra's reports of command-line mistakes as one sentence: a misspelt key, a wrong type, an unknown
option or flag.

Hydra reports a bad override in five to ten lines (the message, OmegaConf's ``full_key`` /
``object_type`` block, the config search path, a hint about ``HYDRA_FULL_ERROR``).
:func:`one_line_errors` wraps an entry point so that those mistakes print as a single
``error: ...`` line that names the override and what to do, with exit status 2 (as argparse
does for usage errors). Anything else is left to Hydra's own report, and ``HYDRA_FULL_ERROR=1``
still gives the full stack trace.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from contextlib import contextmanager
from typing import Iterator

from ocrexp.compat.hydra import error_report_replaced, usage_errors_replaced
from ocrexp.errors import OcrexpError, exit_with_error
from ocrexp.renames import renamed_option


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Within this block, Hydra's command-line and composition errors print as one line."""

    def report(step, hydra_report):
        try:
            return step()
        except Exception as exc:
            error = exc  # `exc` is unbound once the except block ends
            message = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else describe(error)
            if message is None:
                return hydra_report(lambda: _reraise(error))
            exit_with_error(message)

    def usage(message: str) -> None:
        prog = os.path.basename(sys.argv[0]) or "the command"
        exit_with_error(f"{prog}: {message}; `{prog} --help` lists what it takes.")

    with error_report_replaced(report), usage_errors_replaced(usage):
        yield


def describe(exc: BaseException) -> str | None:
    """One sentence for a mistake made on the command line, or None for anything else."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if isinstance(exc, OcrexpError):
        return str(exc)
    if isinstance(exc, OverrideParseException):
        return (f"could not parse the override {exc.override!r}: {_first_line(exc)} (the syntax: "
                "https://hydra.cc/docs/advanced/override_grammar/basic/).")
    if isinstance(exc, MissingConfigException):
        return _missing_option(exc)
    if isinstance(exc, ConfigCompositionException):
        return _bad_override(exc)
    return None


def _bad_override(exc: BaseException) -> str | None:
    cause = exc.__cause__
    text = str(exc)
    unknown = re.match(r"Could not override '([^']+)'", text)
    if unknown:
        key = unknown.group(1)
        known = _sibling_keys(cause)
        close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
        add = re.search(r"use (\+\S+)", text)
        hint = f" (did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}?)" if close else ""
        return (f"{key} is not a setting{hint}: add `--cfg job` to list them all"
                + (f"; to add a new key, write {add.group(1)}." if add else "."))
    merging = re.match(r"Error merging override (.+)", text)
    if merging and cause is not None:
        return f"{merging.group(1)}: {_first_line(cause).rstrip('.')}."
    return None


def _missing_option(exc) -> str | None:
    wanted = re.search(r"Could not find '([^']+)'", str(exc))
    if not wanted or "/" not in wanted.group(1):
        return None
    group, _, option = wanted.group(1).rpartition("/")
    new = renamed_option(group, option)
    if new:
        return f"{group}={option} was renamed: use {group}={new}."
    options = list(exc.options or [])
    if not options:
        return f"{group}={option} is not available: there is no '{group}' config group."
    close = difflib.get_close_matches(option, options, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{group}={option} is not a known {group}{hint}: choose from {', '.join(options)}."


def _sibling_keys(cause: BaseException | None) -> list[str]:
    """Keys of the config node the unknown key was looked up in (OmegaConf records it)."""
    node = getattr(cause, "parent_node", None) or getattr(cause, "object_type", None)
    try:
        return [str(k) for k in node.keys()]  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - a hint only; no node, no suggestion
        fields = getattr(node, "__dataclass_fields__", None)
        return list(fields) if fields else []


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _reraise(exc: BaseException):
    raise exc
