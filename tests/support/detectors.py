"""Helpers of the change-detector tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def first_alarm_times(make: Callable[[], object], streams: list, block: int = 1000) -> np.ndarray:
    """Run length to the first alarm of a fresh change detector on each stream (its length + 1 without one),
    fed in blocks so that a stream stops at its first alarm."""
    out = []
    for xs in streams:
        det = make()
        for start in range(0, len(xs), block):
            alarms = det.update_many(xs[start:start + block])  # type: ignore[attr-defined]
            if len(alarms):
                out.append(start + int(alarms[0]) + 1)
                break
        else:
            out.append(len(xs) + 1)
    return np.asarray(out)
