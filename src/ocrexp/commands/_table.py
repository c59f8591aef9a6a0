"""``ocrexp runs``' tables: typed rows, and how they print (aligned text, CSV, JSON)."""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Table:
    """Rows keyed by column name; values stay typed (float, str, datetime, None) until printed."""

    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)


def render(table: Table, precise: bool = False) -> str:
    """An aligned plain-text table: run ids shortened to 8 characters, numbers right-aligned with
    the decimals their column needs for 4 significant digits (every digit when ``precise``)."""
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in table.rows)
               for c in table.columns]
    decimals = {c: max((_decimals(row[c]) for row in table.rows if isinstance(row.get(c), float)), default=0)
                for c in table.columns}
    cells = [[_text(row.get(c), c, None if precise else decimals[c]) for c in table.columns] for row in table.rows]
    headers = [_header(c) for c in table.columns]
    widths = [max([len(h)] + [len(line[i]) for line in cells]) for i, h in enumerate(headers)]
    lines = []
    for line in [headers, *cells]:
        padded = [v.rjust(w) if right else v.ljust(w) for v, w, right in zip(line, widths, numeric)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def render_diff(table: Table, a, b) -> str:
    ids = f"{a.info.run_id[:8]} and {b.info.run_id[:8]}"
    n_params = len(a.data.params.keys() | b.data.params.keys())
    n_metrics = len(a.data.metrics.keys() | b.data.metrics.keys())
    if not table.rows:
        return f"runs {ids} have the same params ({n_params}) and metrics ({n_metrics})."
    heading = "\n".join(f"{side}: {r.info.run_id[:8]}  {r.info.run_name}  {r.info.status}  "
                        f"{_text(_time(r.info.start_time), 'start_time', None)}" for side, r in (("a", a), ("b", b)))
    kinds = [row["kind"] for row in table.rows]
    summary = (f"params: {kinds.count('param')} of {n_params} differ; "
               f"metrics: {kinds.count('metric')} of {n_metrics} differ.")
    return f"{heading}\n\n{render(table, precise=True)}\n\n{summary}"


def _write_csv(table: Table) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if (v := _for_machines(row.get(c))) is None else v for c in table.columns])


def _write_json(table: Table) -> None:
    json.dump([{c: _for_machines(row.get(c)) for c in table.columns} for row in table.rows], sys.stdout, indent=1)
    sys.stdout.write("\n")


def _for_machines(value: Any) -> Any:
    """A value for machines: full precision, ISO times, NaN as None (strict JSON has no NaN)."""
    from ocrexp.config import plain  # not at the top: this module loads with ``ocrexp --help``

    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return plain(value)


def _header(column: str) -> str:
    return column[:8] if re.fullmatch(r"[0-9a-f]{32}", column) else column


def _text(value: Any, column: str, decimals: int | None) -> str:
    if value is None:
        return ""
    if column == "run_id":
        return value[:8]
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float) and math.isfinite(value):
        return repr(value) if decimals is None else f"{value:.{decimals}f}"
    return str(value)


def _number(value: float) -> str:
    return f"{value:.{_decimals(value)}f}" if math.isfinite(value) else str(value)


def _decimals(value: float, significant: int = 4) -> int:
    """The fewest decimals that show ``value`` to ``significant`` digits (at most 10)."""
    if not math.isfinite(value) or value == 0:
        return 0
    most = max(0, min(10, significant - 1 - math.floor(math.log10(abs(value)))))
    return next(d for d in range(most + 1) if round(value, d) == round(value, most))


def _time(millis: int | None) -> datetime | None:
    return None if millis is None else datetime.fromtimestamp(millis / 1000).astimezone()
