"""The kinds of test (CONTRIBUTING.md): every collected test has exactly one of unit, kafka, kubernetes and
helm, and a unit test needs neither the broker nor the emulated cluster, so ``pytest -m "unit and not slow"``
runs without them. The suite is collected in a subprocess with a small plugin (tests/support/collected.py)
that reports each test's marks and fixtures as the hook in conftest.py left them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.collected import ENV

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"unit", "kafka", "kubernetes", "helm"}
INFRASTRUCTURE = {"broker": "kafka", "emu": "kubernetes", "client": "kubernetes"}


def problems(collected: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the kinds of the collected tests, one line a test."""
    out = []
    for t in collected:
        kinds = KINDS.intersection(t["marks"])
        if len(kinds) != 1:
            out.append(f"{t['nodeid']}: kinds {sorted(kinds)}, not exactly one")
        elif "unit" in kinds and (used := sorted(INFRASTRUCTURE.keys() & set(t["fixtures"]))):
            out.append(f"{t['nodeid']}: a unit test using {used}")
    return out


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("collected") / "items.json"
    env = {**os.environ, ENV: str(out), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                                      os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-p", "tests.support.collected", "tests"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    items: list[dict[str, Any]] = json.loads(out.read_text())
    return items


def test_every_test_has_exactly_one_kind_and_unit_tests_use_no_broker_or_cluster(
        collected: list[dict[str, Any]]) -> None:
    assert any(t["nodeid"].startswith("tests/test_markers.py::") for t in collected)
    assert problems(collected) == []


def test_the_kind_follows_the_fixtures_and_the_folder(collected: list[dict[str, Any]]) -> None:
    for t in collected:
        marks = set(t["marks"])
        if t["nodeid"].startswith("tests/helm/"):
            assert "helm" in marks, t
        if "emu" in t["fixtures"] or "client" in t["fixtures"]:
            assert "kubernetes" in marks, t
        elif "broker" in t["fixtures"]:
            assert "kafka" in marks, t
    kinds = {k for t in collected for k in KINDS.intersection(t["marks"])}
    assert kinds == KINDS  # every kind is in use, so each -m selection runs something


def test_the_check_finds_a_test_of_no_kind_of_two_kinds_and_a_unit_test_on_the_broker() -> None:
    bad = [{"nodeid": "a", "marks": ["slow"], "fixtures": []},
           {"nodeid": "b", "marks": ["kafka", "unit"], "fixtures": ["broker"]},
           {"nodeid": "c", "marks": ["unit"], "fixtures": ["broker", "tmp_path"]},
           {"nodeid": "d", "marks": ["unit"], "fixtures": ["client", "emu"]},
           {"nodeid": "e", "marks": ["kubernetes", "slow"], "fixtures": ["emu"]}]
    assert problems(bad) == ["a: kinds [], not exactly one", "b: kinds ['kafka', 'unit'], not exactly one",
                             "c: a unit test using ['broker']", "d: a unit test using ['client', 'emu']"]
