"""``vigil detect``: run one change detector causally over a recorded metric series (a CSV file).

The series is read whole, its values fed to the detector in order (:meth:`ChangeDetector.update_many`,
the same result as one :meth:`~ChangeDetector.update` per value), and one JSON line is written per alarm::

    {"index": 1234, "time": "2014-02-19 10:50:00", "detector": "robust_shift", "statistic": 9.81}

``index`` is the 0-based data row of the file (the header is not a row; skipped rows keep their index),
``time`` that row's time column (``null`` without one), ``statistic`` the detector's statistic at the alarm.
Empty, ``NaN`` and infinite values are skipped (the detector never sees them) and counted on stderr.
After an alarm the detector restarts, so every change of a long series is reported.
"""

from __future__ import annotations

import argparse
import copy
import csv
import inspect
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from controller.errors import VigilError

__all__ = ["DEFAULT_DETECTOR", "DetectError", "Series", "change_detectors", "detect", "make_detector",
           "read_series", "register", "run"]

#: The detector ``vigil detect`` runs without ``--detector``: the best of the registered detectors on the
#: NAB corpus at their default settings, untuned (see ``benchmarks/nab.py``).
DEFAULT_DETECTOR = "robust_shift"


class DetectError(VigilError, ValueError):
    """Bad input: a message naming the file, column, line or detector."""


@dataclass(frozen=True)
class Series:
    """The finite values of a series, with the row (0-based, header excluded) and time of each."""

    values: NDArray[np.float64]
    rows: NDArray[np.intp]
    times: list[str] | None
    n_rows: int
    skipped: int


def read_series(path: str | Path, value_column: str = "value", time_column: str | None = None) -> Series:
    """Read a CSV file with a header row. ``time_column=None`` takes a ``timestamp`` column if there is one.

    Raises :class:`DetectError` for a missing file or column and for a value that is not a number (with
    its line number); empty, NaN and infinite values are skipped and counted.
    """
    try:
        f = open(path, newline="", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise DetectError(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DetectError(f"{path} is empty: expected a header row naming the columns") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DetectError(f"{path}: not a readable CSV file: {exc}") from None
        header = [h.strip() for h in header]
        if value_column not in header:
            raise DetectError(f"{path} has no column {value_column!r} (columns: {', '.join(header)})")
        vcol = header.index(value_column)
        tcol: int | None = None
        if time_column is not None:
            if time_column not in header:
                raise DetectError(f"{path} has no column {time_column!r} (columns: {', '.join(header)})")
            tcol = header.index(time_column)
        elif "timestamp" in header:
            tcol = header.index("timestamp")
        values: list[float] = []
        rows: list[int] = []
        times: list[str] = []
        skipped = 0
        n = 0
        try:
            for record in reader:
                if not record:  # a blank line is no row at all
                    continue
                text = record[vcol].strip() if vcol < len(record) else ""
                if tcol is not None:
                    times.append(record[tcol].strip() if tcol < len(record) else "")
                try:
                    x = float(text) if text else math.nan
                except ValueError:
                    raise DetectError(f"{path}, line {reader.line_num}: {value_column} is not a number: "
                                      f"{text[:40]!r}") from None
                if math.isfinite(x):
                    values.append(x)
                    rows.append(n)
                else:
                    skipped += 1
                n += 1
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DetectError(f"{path}, line {reader.line_num}: {exc}") from None
    return Series(np.asarray(values, dtype=np.float64), np.asarray(rows, dtype=np.intp),
                  times if tcol is not None else None, n, skipped)


def change_detectors() -> dict[str, type[Any]]:
    """Every registered single-stream change detector, by name."""
    import detectors  # noqa: F401  (importing the package registers every detector)
    from detectors.base import REGISTRY, ChangeDetector

    return {n: c for n, c in sorted(REGISTRY.items()) if issubclass(c, ChangeDetector)}


def make_detector(name: str | None = None, arl: float | None = None) -> Any:
    """A registered change detector at its default parameters (and ``arl``, if given)."""
    known = change_detectors()
    name = name or DEFAULT_DETECTOR
    if name not in known:
        raise DetectError(f"unknown detector {name!r}; known: {', '.join(known)}")
    cls = known[name]
    kwargs: dict[str, Any] = {}
    if arl is not None:
        if "arl" not in inspect.signature(cls).parameters:
            raise DetectError(f"detector {name!r} takes no arl parameter")
        kwargs["arl"] = arl
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DetectError(f"detector {name!r}: {exc}") from None


def run(det: Any, values: NDArray[np.float64]) -> list[tuple[int, float]]:
    """Feed ``values`` to ``det``; the position (into ``values``) and statistic of every alarm.

    A first pass on a copy finds the alarms with the vectorised path; the second feeds the detector up to
    each alarm in turn, to read its statistic there, and then the rest (twice the work of one pass).
    """
    probe = copy.deepcopy(det)
    positions = [int(i) for i in probe.update_many(values)]
    out: list[tuple[int, float]] = []
    start = 0
    for i in positions:
        det.update_many(values[start:i + 1])
        out.append((i, float(det.statistic)))
        start = i + 1
    det.update_many(values[start:])
    return out


def detect(path: str | Path, value_column: str = "value", time_column: str | None = None,
           detector: str | None = None, arl: float | None = None) -> tuple[list[dict[str, Any]], Series, Any]:
    """The alarm records of ``detector`` on the series in ``path``, the series, and the detector."""
    det = make_detector(detector, arl)  # before reading: an unknown name fails fast
    series = read_series(path, value_column, time_column)
    try:
        alarms = run(det, series.values)
    except ValueError as exc:  # e.g. a 0/1 detector given other values
        raise DetectError(f"detector {det.name!r} on {path}: {exc}") from None
    records = []
    for i, stat in alarms:
        row = int(series.rows[i])
        records.append({"index": row, "time": series.times[row] if series.times is not None else None,
                        "detector": det.name, "statistic": stat if math.isfinite(stat) else None})
    return records, series, det


def _main(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"vigil detect: error: {message}", file=sys.stderr)
        return 2

    if args.arl is not None and not (math.isfinite(args.arl) and args.arl > 0):
        return fail(f"--arl must be a finite number > 0, got {args.arl!r}")
    try:
        records, series, det = detect(args.series, args.value_column, args.time_column, args.detector, args.arl)
    except DetectError as exc:
        return fail(str(exc))
    out: IO[str]
    if args.output in (None, "-"):
        out = sys.stdout
    else:
        try:
            out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            return fail(f"cannot write {args.output}: {exc.strerror or exc}")
    try:
        for r in records:
            out.write(json.dumps(r) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
    note = (f", {series.skipped} skipped (empty, NaN or infinite {args.value_column})" if series.skipped else "")
    print(f"detect: {series.n_rows} rows{note}, {len(records)} alarms from {det.name} "
          f"(arl {det.arl:g})", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``detect`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "detect", help="run a change detector over a recorded metric series (CSV); one JSON line per alarm",
        description="Run one change detector causally over a metric series in a CSV file with a header row "
                    "and write one JSON line per alarm: index (0-based data row), time, detector, statistic.",
        epilog=f"Any registered change detector can be named (an unknown name lists them); the default, "
               f"{DEFAULT_DETECTOR}, did best on the NAB corpus untuned (benchmarks/nab.py).")
    p.add_argument("series", metavar="SERIES.csv", help="CSV file with a header row")
    p.add_argument("--value-column", default="value", help="column of the metric's values (default value)")
    p.add_argument("--time-column", help="column of the times, copied to each alarm (default: timestamp, "
                   "if the file has one)")
    p.add_argument("--detector", default=None, metavar="NAME", help=f"change detector (default {DEFAULT_DETECTOR})")
    p.add_argument("--arl", type=float, help="target average run length to a false alarm, in observations "
                   "(default: the detector's own)")
    p.add_argument("--output", "-o", metavar="FILE", help="write alarm lines here (default stdout)")
    p.set_defaults(func=_main)
