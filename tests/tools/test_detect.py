"""``vigil detect`` on small CSV files: alarms at a level shift, JSON lines, skipped values, clear errors; and
its default detector, :class:`detectors.change.robust_shift.RobustShift` (its ARL, its self-calibration)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.cli import main
from controller.tools.detect import DEFAULT_DETECTOR, read_series
from detectors.change.robust_shift import RobustShift, floor_for_arl
from tests.support.detectors import first_alarm_times

VIGIL = [sys.executable, "-m", "controller.cli"]
SHIFT = 400


def write_series(path: Path, values: list[str] | np.ndarray, header: str = "timestamp,value") -> Path:
    lines = [header] + [f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def shifted(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    xs = np.concatenate([rng.normal(100.0, 5.0, SHIFT), rng.normal(140.0, 5.0, 200)])
    return write_series(tmp_path / "series.csv", [f"{x:.3f}" for x in xs])


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict], str]:
    code = main(["detect", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_default_detector_alarms_at_the_level_shift(shifted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, alarms, err = run([str(shifted)], capsys)
    assert code == 0
    assert [a["index"] for a in alarms] == [SHIFT]
    a = alarms[0]
    assert list(a) == ["index", "time", "detector", "statistic"]
    assert a["detector"] == DEFAULT_DETECTOR == "robust_shift"
    assert a["time"] == f"2024-01-01 {SHIFT // 60:02d}:{SHIFT % 60:02d}:00"
    assert a["statistic"] > 1.0
    assert "600 rows" in err and "1 alarms from robust_shift" in err and "skipped" not in err


def test_other_detectors_and_arl(shifted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "alarms.jsonl"
    code, printed, err = run([str(shifted), "--detector", "bocpd", "--arl", "1000", "--output", str(out)], capsys)
    assert code == 0 and printed == []
    alarms = [json.loads(line) for line in out.read_text().splitlines()]
    assert alarms and all(a["detector"] == "bocpd" for a in alarms)
    assert any(SHIFT <= a["index"] <= SHIFT + 5 for a in alarms)
    assert "(arl 1000)" in err
    assert all(0.0 <= a["statistic"] <= 1.0 for a in alarms)  # BOCPD's statistic is a probability


def test_explicit_columns_and_no_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    xs = np.concatenate([rng.normal(0, 1, 300), [25.0], rng.normal(0, 1, 100)])
    path = tmp_path / "s.csv"
    path.write_text("latency_ms,when\n" + "".join(f"{x},t{i}\n" for i, x in enumerate(xs)))
    code, alarms, _ = run([str(path), "--value-column", "latency_ms"], capsys)
    assert code == 0 and [(a["index"], a["time"]) for a in alarms] == [(300, None)]  # a spike; no timestamp column
    code, alarms, _ = run([str(path), "--value-column", "latency_ms", "--time-column", "when"], capsys)
    assert code == 0 and [(a["index"], a["time"]) for a in alarms] == [(300, "t300")]


def test_nan_and_empty_values_are_skipped_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(11)
    values = [f"{x:.3f}" for x in np.concatenate([rng.normal(100.0, 5.0, SHIFT), rng.normal(140.0, 5.0, 200)])]
    values[10] = ""
    values[20] = "NaN"
    values[30] = "nan"
    values[SHIFT - 1] = ""
    path = write_series(tmp_path / "gaps.csv", values)
    code, alarms, err = run([str(path)], capsys)
    assert code == 0
    assert [a["index"] for a in alarms] == [SHIFT]  # indices are the file's data rows, skipped ones included
    assert "4 skipped" in err and "600 rows" in err
    series = read_series(path)
    assert series.n_rows == 600 and series.skipped == 4 and series.values.size == 596
    assert int(series.rows[10]) == 11


@pytest.mark.parametrize(("content", "argv", "message"), [
    (None, [], "cannot read"),
    ("timestamp,value\n2024-01-01,1\n", ["--value-column", "cpu"], "no column 'cpu'"),
    ("timestamp,value\n2024-01-01,1\n", ["--time-column", "ts"], "no column 'ts'"),
    ("timestamp,value\n2024-01-01,1\n2024-01-02,1.5\n2024-01-03,oops\n", [], "line 4: value is not a number: 'oops'"),
    ("timestamp,value\n2024-01-01,1\n", ["--detector", "nope"], "unknown detector 'nope'; known: "),
    ("timestamp,value\n2024-01-01,1\n", ["--arl", "-3"], "--arl must be"),
    ("timestamp,value\n2024-01-01,1\n", ["--detector", "bocpd", "--arl", "0.5"], "arl must be > 1"),
    ("", [], "is empty"),
])
def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None,
                                    argv: list[str], message: str) -> None:
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    code, alarms, err = run([str(path), *argv], capsys)
    assert code == 2 and alarms == []
    assert message in err and err.startswith("vigil detect: error: ")
    if "column" in message or "line" in message or "cannot read" in message:
        assert str(path) in err
    if "unknown" in message:
        assert "robust_shift" in err and "bocpd" in err


def test_the_command_line_end_to_end(shifted: Path) -> None:
    proc = subprocess.run([*VIGIL, "detect", str(shifted)], capture_output=True, text=True, check=True)
    assert [json.loads(line)["index"] for line in proc.stdout.splitlines()] == [SHIFT]
    bad = subprocess.run([*VIGIL, "detect", str(shifted), "--value-column", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no column 'nope'" in bad.stderr and bad.stdout == ""


# --- the default detector -------------------------------------------------------------------------------------


def first_alarms(streams: list[np.ndarray], arl: float) -> np.ndarray:
    return first_alarm_times(lambda: RobustShift(arl=arl), streams, block=1000)


@pytest.mark.slow
def test_robust_shift_arl_on_normal_streams_is_the_target() -> None:
    # 2,000 streams of 10 x arl, each with its own location and scale (the detector is affine invariant)
    rng = np.random.default_rng(2026)
    streams = [rng.normal(rng.uniform(-50, 50), rng.uniform(0.1, 10), 10_000) for _ in range(2000)]
    t = np.minimum(first_alarms(streams, 1000.0), 10_001)
    assert (t > 10_000).mean() < 0.01
    se = t.std() / np.sqrt(t.size)  # ~22 for run lengths of mean ~1,000
    assert t.mean() > 1000.0 - 3 * se, (t.mean(), se)
    assert t.mean() < 1000.0 + 6 * se, (t.mean(), se)  # calibrated, not merely conservative


def test_robust_shift_calibrates_itself_to_heavy_tails() -> None:
    # Student t with 2 degrees of freedom: a z-score detector calibrated for normal data alarms all the time;
    # this one's record rule keeps the long-run false alarm rate near 1 / arl whatever the law.
    rng = np.random.default_rng(7)
    xs = rng.standard_t(2, 200_000)
    det = RobustShift(arl=10_000.0)
    alarms = det.update_many(xs)
    later = alarms[alarms >= 20_000]
    assert len(later) <= 2 * 180_000 / 10_000, len(later)
    z = np.abs(xs - np.median(xs)) / (1.4826 * np.median(np.abs(xs - np.median(xs))))
    assert (z > floor_for_arl(10_000.0)).sum() > 50 * 20  # the floor alone would alarm far more


def test_robust_shift_is_affine_invariant_and_finds_spikes_and_shifts() -> None:
    rng = np.random.default_rng(3)
    xs = np.concatenate([rng.normal(0, 1, 500), [9.0], rng.normal(0, 1, 499), rng.normal(-6, 1, 500)])
    base = [int(i) for i in RobustShift().update_many(xs)]
    assert base[:2] == [500, 1000]
    assert [int(i) for i in RobustShift().update_many(1e6 + 4.0 * xs)] == base


def test_robust_shift_floor_table() -> None:
    assert floor_for_arl(10_000.0) == pytest.approx(4.06)
    assert floor_for_arl(1_000.0) < floor_for_arl(5_000.0) < floor_for_arl(10_000.0) < floor_for_arl(1e7)
    assert floor_for_arl(20.0) >= 0.0
    assert RobustShift(arl=3000.0).floor == pytest.approx(floor_for_arl(3000.0))
    assert RobustShift(floor=2.5).floor == 2.5
