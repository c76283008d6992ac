"""The per-case report of a batch job, as CSV (for people) and JSON (for programs and resuming)."""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from monai_topo.inference.atomic import atomic_path

REPORT_STEM = "inference_report"
"""The report is ``<output>/inference_report.csv`` and ``.json``."""

PARTIAL_GLOB = f"{REPORT_STEM}.rank*.partial.json"

STATUSES = ("ok", "failed", "skipped")

COLUMNS = (
    "case",
    "status",
    "message",
    "rank",
    "image",
    "label",
    "output",
    "items",
    "priors",
    "betti_before",
    "betti_after",
    "satisfied_before",
    "satisfied_after",
    "iterations",
    "seconds",
    "dice",
    "betti_error",
)
"""Report columns. ``items``: refined items (slices of a slice-by-slice volume, else 1); ``priors``:
the prior of each item;
``betti_before``/``betti_after``: one ``(β0, β1[, β2])`` per item and scored channel;
``satisfied_*``: how many items met the prior; ``iterations``: refinement steps summed over items;
``dice``/``betti_error``: against the label when one was given (Betti error per 2D slice for
slice-by-slice bundles, averaged)."""


def report_paths(output: str | os.PathLike) -> tuple[Path, Path]:
    """``(csv_path, json_path)`` of the report in an output folder."""
    output = Path(output)
    return output / f"{REPORT_STEM}.csv", output / f"{REPORT_STEM}.json"


def partial_path(output: str | os.PathLike, rank: int) -> Path:
    """Where process ``rank`` keeps its own rows while a distributed job runs."""
    return Path(output) / f"{REPORT_STEM}.rank{rank}.partial.json"


def _json_safe(value: Any) -> Any:
    """NaN/Inf become ``None`` (JSON has no NaN), tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _write_json(path: Path, content: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(content), indent=1) + "\n")


def read_rows(output: str | os.PathLike) -> dict[str, dict]:
    """Rows of earlier runs by case: the JSON report, updated by partial reports an interrupted run left.

    Examples
    --------
    >>> import tempfile
    >>> from monai_topo.inference.report import read_rows, write_report
    >>> folder = tempfile.mkdtemp()
    >>> write_report(folder, [{"case": "a", "status": "ok", "dice": float("nan")}], run={})
    >>> read_rows(folder)["a"]["dice"] is None
    True
    """
    rows: dict[str, dict] = {}
    json_path = report_paths(output)[1]
    sources = [json_path] if json_path.is_file() else []
    sources += sorted(Path(output).glob(PARTIAL_GLOB))
    for source in sources:
        try:
            content = json.loads(source.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(
                f"cannot read the earlier report {source}: {error}; move it away to start afresh."
            ) from None
        cases = content.get("cases") if isinstance(content, dict) else None
        if not isinstance(cases, list) or not all(isinstance(row, dict) and "case" in row for row in cases):
            raise ValueError(
                f"the earlier report {source} is not a monai-topo report (no list of case rows under 'cases'); "
                "move it away to start afresh."
            )
        for row in cases:
            rows[row["case"]] = row
    return rows


def write_partial(output: str | os.PathLike, rank: int, rows: Iterable[Mapping]) -> None:
    """Save one process's rows so far (atomically), so an interrupted run loses no finished case."""
    _write_json(partial_path(output, rank), {"cases": list(rows)})


def remove_partials(output: str | os.PathLike) -> None:
    """Delete the partial reports once their rows are in the merged report."""
    for path in Path(output).glob(PARTIAL_GLOB):
        path.unlink(missing_ok=True)


def merge_rows(earlier: Mapping[str, Mapping], new: Iterable[Mapping]) -> list[dict]:
    """Rows of this run over those of earlier runs, sorted by case.

    A case skipped now keeps its earlier results, with this run's status, rank and message;
    cases not in this run keep their earlier rows. Every row gets every column of :data:`COLUMNS`
    (``None`` where there is no value).

    Examples
    --------
    >>> from monai_topo.inference.report import merge_rows
    >>> earlier = {"a": {"case": "a", "status": "ok", "dice": 0.9}, "b": {"case": "b", "status": "failed"}}
    >>> [(r["case"], r["status"], r.get("dice")) for r in merge_rows(earlier, [{"case": "a", "status": "skipped"}])]
    [('a', 'skipped', 0.9), ('b', 'failed', None)]
    """
    empty = dict.fromkeys(COLUMNS)
    merged = {case: {**empty, **row} for case, row in earlier.items()}
    for row in new:
        kept = merged.get(row["case"], empty) if row["status"] == "skipped" else empty
        merged[row["case"]] = {**kept, **row}
    return [merged[case] for case in sorted(merged)]


def _csv_cell(value: Any) -> str:
    value = _json_safe(value)
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def write_report(output: str | os.PathLike, rows: Iterable[Mapping], run: Mapping) -> None:
    """Write ``inference_report.csv`` and ``.json`` atomically.

    Parameters
    ----------
    output : str or os.PathLike
        The output folder.
    rows : iterable of dict
        One row per case, keys among :data:`COLUMNS` (lists JSON-encoded in the CSV).
    run : dict
        Settings of the run, stored in the JSON beside a count of rows per status.
    """
    rows = list(rows)
    csv_path, json_path = report_paths(output)
    counts = Counter(row["status"] for row in rows)
    _write_json(json_path, {"run": dict(run), "summary": {s: counts.get(s, 0) for s in STATUSES}, "cases": rows})
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_cell(row.get(key)) for key in COLUMNS})
