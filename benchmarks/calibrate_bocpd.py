"""Calibrate :class:`detectors.change.bocpd.BOCPD`'s threshold to a target ARL, by simulation; prints the table.

Run: ``python -m benchmarks.calibrate_bocpd [--streams 4000] [--length 40000]``
(about 7 minutes on 2 free cores at the defaults), then paste the printed ``CALIBRATION`` into
``detectors/change/bocpd.py``. With ``--detector robust_shift`` it calibrates
:class:`detectors.change.robust_shift.RobustShift`'s ``floor`` instead (see :func:`robust_shift_table`).

The detector is invariant to ``x -> a x + b`` (``a > 0``: it standardizes by the warm-up's median and MAD),
so standard normal streams stand for every in-control normal stream. Each of ``--streams`` independent
streams runs the detector's own recursion (its warm-up, then the kernel of ``update_many``) for ``--length``
observations, and records for a grid of thresholds (logits of the probability) the first observation at
which the statistic reaches each one: after an alarm the detector restarts afresh, so the
first-passage time of a fresh detector is the run length between alarms. The ARL of a threshold is the
mean first-passage time over the streams; streams with no alarm within ``--length`` are censored, and
handled by the exponential-tail estimate ``warmup + (total time past the warm-up) / (number of alarms)``,
which is the plain mean when every stream alarms. The alarm hazard is somewhat higher just after the
warm-up than later, so for ARLs beyond ``--length`` the estimate errs low: the true ARL of the tabled
thresholds is then, if anything, longer than the target.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from detectors.change.bocpd import BOCPD

TARGETS = (100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000)
GRID = np.round(np.arange(-14.0, 8.0001, 0.25), 2)  # logits of the threshold


def first_passages(streams: int, length: int, seed: int, chunk: int = 2000) -> np.ndarray:
    """``(streams, len(GRID))`` first-passage times (observations, warm-up included); ``length + 1`` if none.

    Each stream is a detector fed its warm-up, then the detector's own kernel (the one behind ``update`` and
    ``update_many``) with no alarm, ``chunk`` observations at a time, recording the statistic of each; the
    first passage of a threshold is the first observation whose statistic reaches it. The streams draw their
    observations from one generator, time step by time step across the streams.
    """
    w = BOCPD().warmup
    rng = np.random.default_rng(seed)
    thresholds = 1.0 / (1.0 + np.exp(-GRID))
    out = np.full((streams, GRID.size), length + 1, dtype=np.int64)
    warm = rng.standard_normal((streams, w))
    dets = []
    for row in warm:
        det = BOCPD()
        det.update_many(row)  # the warm-up: the standardization, and the recursion over it (no alarm)
        dets.append(det)
    peak = np.zeros(streams)  # the largest statistic so far after the warm-up
    stats = np.empty(chunk)
    for start in range(w, length, chunk):
        n = min(chunk, length - start)
        xs = rng.standard_normal((n, streams))
        for i, det in enumerate(dets):
            s = stats[:n]
            det._run.run(np.ascontiguousarray(xs[:, i]), det._loc, det._scale, math.inf, s)
            high = np.maximum(np.maximum.accumulate(s), peak[i])
            peak[i] = high[-1]
            todo = np.flatnonzero(out[i] > length)
            pos = np.searchsorted(high, thresholds[todo])  # the first observation of the chunk reaching each
            hit = pos < n
            out[i, todo[hit]] = start + pos[hit] + 1
    return out


def arl_by_threshold(passages: np.ndarray, length: int, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """Estimated ARL and the number of alarms, per grid threshold."""
    alarms = (passages <= length).sum(axis=0)
    exposure = (np.minimum(passages, length) - warmup).sum(axis=0)
    with np.errstate(divide="ignore"):
        arl = np.where(alarms > 0, warmup + exposure / np.maximum(alarms, 1), np.inf)
    return arl, alarms


# --- RobustShift ----------------------------------------------------------------------------------------------

RS_TARGETS = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000)
RS_GRID = np.round(np.arange(0.0, 8.0001, 0.02), 2)  # floors, in robust standard deviations


def robust_shift_passages(streams: int, length: int, seed: int) -> np.ndarray:
    """``(streams, len(RS_TARGETS), len(RS_GRID))`` first-alarm times of fresh detectors; ``length + 1``: none.

    The detector's own arithmetic, vectorized over each stream: residual ``r`` and reference scale ``s`` of
    every observation, the record ``M`` (largest residual of the last ``arl`` observations: a sliding
    maximum), and an alarm at the first armed observation with ``r > M`` and ``r > floor * s``, found for
    the whole grid of floors at once from the running maximum of ``r / s`` over the observations that beat
    their record.
    """
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy.ndimage import maximum_filter1d

    from detectors.change.robust_shift import _MAD_TO_SD, RobustShift, _middle

    d = RobustShift()
    k, m0 = d.reference, d.warmup
    rng = np.random.default_rng(seed)
    out = np.full((streams, len(RS_TARGETS), RS_GRID.size), length + 1, dtype=np.int64)
    first = k + m0  # 0-based index of the first observation that can alarm
    for b in range(streams):
        x = rng.standard_normal(length)
        windows = sliding_window_view(x[:-1], k)
        med = _middle(windows)
        s = _MAD_TO_SD * _middle(np.abs(windows - med[:, None]))
        r = np.zeros(length)
        r[k:] = np.abs(x[k:] - med)
        scale = np.zeros(length)
        scale[k:] = s
        for j, target in enumerate(RS_TARGETS):
            memory = int(math.ceil(target))
            size = memory - 1  # the record before observation i: residuals i - memory + 1 .. i - 1
            if size >= length:
                prev = np.concatenate([[0.0], np.maximum.accumulate(r)[:-1]])
            elif size >= 1:
                ending = maximum_filter1d(r, size=size, origin=(size - 1) // 2, mode="constant", cval=0.0)
                prev = np.concatenate([[0.0], ending[:-1]])
            else:
                prev = np.zeros(length)
            idx = np.arange(first, length)
            beats = idx[r[idx] > prev[idx]]
            if beats.size == 0:
                continue
            with np.errstate(divide="ignore"):
                q = np.where(scale[beats] > 0, r[beats] / np.where(scale[beats] > 0, scale[beats], 1.0), np.inf)
            best = np.maximum.accumulate(q)
            pos = np.searchsorted(best, RS_GRID, side="right")  # first beat with q > floor
            hit = pos < beats.size
            out[b, j, hit] = beats[pos[hit]] + 1
    return out


def robust_shift_table(args: argparse.Namespace) -> int:
    from detectors.change.robust_shift import RobustShift

    d = RobustShift()
    t0 = time.perf_counter()
    chunks = [args.streams // args.workers + (1 if i < args.streams % args.workers else 0)
              for i in range(args.workers)]
    seeds = np.random.SeedSequence(args.seed).spawn(args.workers)
    with ProcessPoolExecutor(args.workers) as pool:
        parts = list(pool.map(robust_shift_passages, chunks, [args.length] * args.workers,
                              [int(s.generate_state(1)[0]) for s in seeds]))
    passages = np.concatenate(parts)
    start = d.reference + d.warmup
    rows = []
    for j, target in enumerate(RS_TARGETS):
        arl, alarms = arl_by_threshold(passages[:, j, :], args.length, start)
        ok = np.isfinite(arl) & (alarms >= 30)
        for g, a, n in zip(RS_GRID[::10], arl[::10], alarms[::10], strict=True):
            print(json.dumps({"arl_target": target, "floor": float(g), "arl": round(float(a), 1),
                              "alarms": int(n)}), file=sys.stderr)
        la = math.log(target)
        if not ok.any() or not (math.log(arl[ok][0]) <= la <= math.log(arl[ok][-1])):
            print(f"# arl {target}: outside the simulated range, not tabled", file=sys.stderr)
            continue
        # the ARL grows with the floor; take the smallest floor whose ARL reaches the target (interpolated)
        rows.append((target, round(float(np.interp(la, np.log(arl[ok]), RS_GRID[ok])), 3)))
    print(f"# robust_shift: {args.streams} streams x {args.length} observations, seed {args.seed}, "
          f"{time.perf_counter() - t0:.0f} s")
    print("CALIBRATION: tuple[tuple[float, float], ...] = (")
    for target, g in rows:
        print(f"    ({float(target)!r}, {g!r}),")
    print(")")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", choices=("bocpd", "robust_shift"), default="bocpd")
    parser.add_argument("--streams", type=int, default=4000)
    parser.add_argument("--length", type=int, default=40_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args(argv)
    if args.detector == "robust_shift":
        return robust_shift_table(args)
    d = BOCPD()
    t0 = time.perf_counter()
    chunks = [args.streams // args.workers + (1 if i < args.streams % args.workers else 0)
              for i in range(args.workers)]
    seeds = np.random.SeedSequence(args.seed).spawn(args.workers)
    with ProcessPoolExecutor(args.workers) as pool:
        parts = list(pool.map(first_passages, chunks, [args.length] * args.workers,
                              [int(s.generate_state(1)[0]) for s in seeds]))
    passages = np.concatenate(parts)
    arl, alarms = arl_by_threshold(passages, args.length, d.warmup)
    for g, a, n in zip(GRID, arl, alarms, strict=True):
        print(json.dumps({"logit": float(g), "arl": round(float(a), 1), "alarms": int(n)}), file=sys.stderr)
    log_arl = np.log(arl)
    ok = np.isfinite(log_arl) & (alarms >= 30)  # enough alarms for a ~20% estimate
    rows = []
    for target in TARGETS:
        la = math.log(target)
        if not (log_arl[ok][0] <= la <= log_arl[ok][-1]):
            print(f"# arl {target}: outside the simulated range "
                  f"[{arl[ok][0]:.0f}, {arl[ok][-1]:.0f}], not tabled", file=sys.stderr)
            continue
        rows.append((target, round(float(np.interp(la, log_arl[ok], GRID[ok])), 3)))
    print(f"# {args.streams} streams x {args.length} observations, seed {args.seed}, "
          f"{time.perf_counter() - t0:.0f} s")
    print("CALIBRATION: tuple[tuple[float, float], ...] = (")
    for target, logit in rows:
        print(f"    ({float(target)!r}, {logit!r}),")
    print(")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
