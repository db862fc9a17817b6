"""NAB (Numenta Anomaly Benchmark) scores of ``vigil detect``'s alarms, one JSON line per change detector.

Run: ``python -m benchmarks.nab [--data DIR] [--detector NAME ...] [--arl ARL]`` from the repository root.

The corpus (58 series with labelled anomaly windows; ``--data``, else ``$VIGIL_NAB_DATA``, else
``../shared/data/nab`` from the repository root when it exists) is
run through :func:`controller.tools.detect.detect`, the function behind ``vigil detect SERIES.csv --detector NAME``,
for every registered change detector of real-valued observations at its default parameters: the alarms'
row indices are binary detections, scored as they are (no threshold is optimised, unlike the published
scoreboard, where each detector's threshold on its anomaly score was tuned on the corpus itself). Series
run in parallel (``--workers``, default 2); ``detect_s`` is the CPU time summed over series (reading and
the two passes of :func:`controller.tools.detect.run` included).

Scoring follows the NAB repository's scorer (``nab/sweeper.py``, NAB v1.1, and ``Runner.normalize``) and
Lavin & Ahmad (2015):

* each series' first ``min(floor(0.15 n), 0.15 * 5000)`` rows are probationary: neither detections nor
  window rows there are scored;
* a window (``[start, end]`` row indices, inclusive, ``W`` rows) with no scored detection costs
  ``-fn``; otherwise its first detection, at row ``i``, earns ``tp * S(-(end - i + 1) / W) / S(-1)``
  with the scaled sigmoid ``S(y) = 2 / (1 + exp(5 y)) - 1`` (``-1`` for ``y >= 3``): ``tp`` at the
  window's first row, ``tp * S(-1/W) / S(-1)`` (almost nothing) at its last. Later detections inside the
  same window are neither rewarded nor penalised;
* a detection outside every window is a false positive: ``fp * S(y)`` with ``y = (i - end) / (W - 1)``
  measured from the end of the closest preceding window (of ``W`` rows), or ``-fp`` before the first
  window;
* true negatives are not scored. A series' raw score is the sum; the corpus' raw score is the sum over
  series. The null detector (no detections) scores ``-fn`` per window, the perfect detector ``tp`` per
  window; the normalised score is ``100 * (raw - null) / (perfect - null)``.

Profiles (``config/profiles.json`` of NAB): standard (tp 1, fp 0.11, fn 1), reward_low_FP_rate
(fp 0.22), reward_low_FN_rate (fn 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PROFILES", "PUBLISHED", "FileScore", "load_windows", "normalized", "probationary_length",
           "scaled_sigmoid", "score_corpus", "score_series"]

#: NAB's application profiles (cost matrices): weights of true positives, false positives, false negatives.
PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}

#: The published NAB scoreboard, standard profile (NAB README; thresholds optimised on the corpus).
PUBLISHED: dict[str, float] = {
    "ARTime": 74.9, "Numenta HTM": 70.1, "CAD-OSE": 69.9, "KNN-CAD": 58.0, "Relative Entropy": 54.6,
    "Random Cut Forest": 51.7, "Twitter ADVec": 47.1, "Windowed Gaussian": 39.7, "Bayesian changepoint": 17.7,
}

DATA_ENV = "VIGIL_NAB_DATA"
"""The environment variable naming the NAB data directory when ``--data`` is not given."""
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nab"
"""The shared copy of the corpus next to the repository, used only when it exists."""


def default_data(environ: Mapping[str, str] | None = None) -> Path | None:
    """The NAB data directory when ``--data`` is not given: ``$VIGIL_NAB_DATA``, else the shared copy if it
    exists, else None."""
    env = (os.environ if environ is None else environ).get(DATA_ENV)
    if env:
        return Path(env)
    return SHARED_DATA if SHARED_DATA.is_dir() else None


def scaled_sigmoid(y: float) -> float:
    """NAB's ``scaledSigmoid``: ``2 / (1 + exp(5 y)) - 1``, and ``-1`` from ``y = 3`` on."""
    if y >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probationary_length(n_rows: int, percent: float = 0.15) -> float:
    """Rows at the start of a series that are not scored: ``min(floor(percent n), percent * 5000)``."""
    return min(math.floor(percent * n_rows), percent * 5000)


@dataclass(frozen=True)
class FileScore:
    """A series' raw score and its counts: windows detected / missed, false positive detections."""

    score: float
    windows: int
    detected: int
    false_positives: int


def score_series(n_rows: int, detections: Iterable[int], windows: Sequence[tuple[int, int]],
                 profile: dict[str, float] | str = "standard", probation_percent: float = 0.15) -> FileScore:
    """Raw NAB score of one series of ``n_rows`` rows.

    ``detections``: row indices (0-based) where the detector alarmed. ``windows``: sorted, disjoint
    ``(first_row, last_row)`` pairs, inclusive.

    >>> score_series(100, [], [(40, 49)], probation_percent=0.0).score
    -1.0
    >>> score_series(100, [40], [(40, 49)], probation_percent=0.0).score
    1.0
    """
    cost = PROFILES[profile] if isinstance(profile, str) else profile
    probation = probationary_length(n_rows, probation_percent)
    max_tp = scaled_sigmoid(-1.0)
    wins = sorted((int(a), int(b)) for a, b in windows)
    for k, (a, b) in enumerate(wins):
        if not 0 <= a <= b < n_rows or (k + 1 < len(wins) and wins[k + 1][0] <= b):
            raise ValueError(f"windows must be sorted, disjoint and within the {n_rows} rows: {wins}")
    # A window is scored if any of its rows is past the probationary period; it starts as a miss.
    window_score = {w: -cost["fn"] for w in wins if w[1] >= probation}
    fp_score = 0.0
    false_positives = 0
    ends = [b for _, b in wins]
    for i in sorted(set(int(d) for d in detections)):
        if not 0 <= i < n_rows:
            raise ValueError(f"detection at row {i} is outside the {n_rows} rows")
        if i < probation:
            continue
        inside = next((w for w in wins if w[0] <= i <= w[1]), None)
        if inside is not None:
            width = inside[1] - inside[0] + 1
            tp = scaled_sigmoid(-(inside[1] - i + 1) / width) * cost["tp"] / max_tp
            window_score[inside] = max(window_score[inside], tp)
            continue
        false_positives += 1
        before = [k for k, e in enumerate(ends) if e < i]
        if not before:
            fp_score += -cost["fp"]
            continue
        a, b = wins[before[-1]]
        width = b - a + 1
        # NAB divides by (width - 1), which fails for a one-row window; that case counts as far away.
        position = (i - b) / (width - 1) if width > 1 else math.inf
        fp_score += scaled_sigmoid(position) * cost["fp"]
    detected = sum(1 for w, s in window_score.items() if s > -cost["fn"])
    return FileScore(sum(window_score.values()) + fp_score, len(window_score), detected, false_positives)


def normalized(raw: float, null: float, perfect: float) -> float:
    """``100 * (raw - null) / (perfect - null)``: 100 for the perfect detector, 0 for the null one."""
    return 100.0 * (raw - null) / (perfect - null)


def load_windows(data_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """``labels/combined_windows.json``: series (``category/name.csv``) to ``(start, end)`` timestamps."""
    with open(data_dir / "labels" / "combined_windows.json") as f:
        raw = json.load(f)
    return {k: [(str(a), str(b)) for a, b in v] for k, v in raw.items()}


def _timestamps(path: Path) -> list[str]:
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        col = header.index("timestamp")
        return [r[col] for r in rows]


def window_rows(timestamps: Sequence[str], limits: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
    """Window limits (timestamps, exactly as NAB's sweeper matches them) to row indices."""
    position = {_canonical(t): i for i, t in enumerate(timestamps)}
    out = []
    for a, b in limits:
        try:
            out.append((position[_canonical(a)], position[_canonical(b)]))
        except KeyError as exc:
            raise ValueError(f"window limit {exc.args[0]} is not a timestamp of the series") from None
    return out


def _canonical(t: str) -> str:
    # The labels write "2014-02-19 10:50:00.000000", the data "2014-02-19 10:50:00": same instant.
    t = t.strip()
    return t[:-7] if t.endswith(".000000") else t


def score_corpus(detections: dict[str, Sequence[int]], rows: dict[str, int],
                 windows: dict[str, list[tuple[int, int]]], profile: str = "standard",
                 probation_percent: float = 0.15) -> dict[str, Any]:
    """Normalised NAB score of a corpus: ``detections`` and ``rows`` (row counts) by series, windows as rows.

    The null score is that of no detections at all (as NAB's null detector ends up, its threshold
    optimised); the perfect score is ``tp`` times the number of labelled windows.
    """
    raw = null = 0.0
    n_windows = detected = fps = 0
    for name, n in rows.items():
        got = score_series(n, detections.get(name, ()), windows[name], profile, probation_percent)
        base = score_series(n, (), windows[name], profile, probation_percent)
        raw += got.score
        null += base.score
        n_windows += len(windows[name])
        detected += got.detected
        fps += got.false_positives
    perfect = n_windows * PROFILES[profile]["tp"]
    return {"score": round(normalized(raw, null, perfect), 2), "raw": round(raw, 3), "null": round(null, 3),
            "perfect": perfect, "windows": n_windows, "detected": detected, "false_positives": fps}


# --- running detectors ---------------------------------------------------------------------------------------


def _series_files(data_dir: Path, windows: dict[str, Any]) -> list[str]:
    found = sorted(str(p.relative_to(data_dir / "data")) for p in (data_dir / "data").glob("*/*.csv"))
    missing = sorted(set(windows) - set(found))
    if missing:
        raise SystemExit(f"nab: series in the labels but not in {data_dir / 'data'}: {missing[:3]}...")
    return [f for f in found if f in windows]


def _detect_file(job: tuple[str, Path, str, float | None]) -> tuple[str, int, list[int], float]:
    from controller.tools.detect import detect

    name, path, detector, arl = job
    t = time.perf_counter()
    records, series, _ = detect(path, "value", "timestamp", detector, arl)  # what `vigil detect` runs
    return name, series.n_rows, [r["index"] for r in records], time.perf_counter() - t


def evaluate(detector: str, data_dir: Path, arl: float | None = None,
             workers: int | None = None) -> dict[str, Any]:
    """Run ``detector`` over the corpus as ``vigil detect`` does and score it on every profile."""
    limits = load_windows(data_dir)
    files = _series_files(data_dir, limits)
    jobs = [(f, data_dir / "data" / f, detector, arl) for f in files]
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers or min(2, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_detect_file, jobs))
    wall = time.perf_counter() - t
    rows = {name: n for name, n, _, _ in results}
    detections = {name: d for name, _, d, _ in results}
    windows = {f: window_rows(_timestamps(data_dir / "data" / f), limits[f]) for f in files}
    out: dict[str, Any] = {"detector": detector, "arl": arl}
    for profile in PROFILES:
        scored = score_corpus(detections, rows, windows, profile)
        if profile == "standard":
            out.update(scored)
        else:
            out[f"score_{profile}"] = scored["score"]
    total_rows = sum(rows.values())
    cpu = sum(e for *_, e in results)
    out.update({"rows": total_rows, "alarms": sum(len(d) for d in detections.values()),
                "detect_s": round(cpu, 2), "rows_per_s": round(total_rows / cpu) if cpu > 0 else None,
                "wall_s": round(wall, 2)})
    return out


def _real_change_detectors() -> list[str]:
    import detectors  # noqa: F401  (registers every detector)
    from detectors.base import REGISTRY, ChangeDetector

    return sorted(n for n, c in REGISTRY.items() if issubclass(c, ChangeDetector) and c.kind == "real")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help=f"NAB data directory (data/, labels/); default ${DATA_ENV}, else "
                             f"{SHARED_DATA} if it exists")
    parser.add_argument("--detector", action="append", help="detector name (repeatable; default: every "
                        "registered change detector of real values)")
    parser.add_argument("--arl", type=float, help="target ARL for every detector (default: each one's own)")
    parser.add_argument("--workers", type=int, help="processes (default: min(2, CPUs))")
    args = parser.parse_args(argv)
    data = args.data if args.data is not None else default_data()
    if data is None:
        parser.error(f"no NAB data: pass --data DIR or set {DATA_ENV} (the directory holding data/ and labels/)")
    if not data.is_dir():
        parser.error(f"NAB data directory not found: {data}")
    names = args.detector or _real_change_detectors()
    print(json.dumps({"published_standard": PUBLISHED}))
    for name in names:
        print(json.dumps(evaluate(name, data.resolve(), args.arl, args.workers)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
