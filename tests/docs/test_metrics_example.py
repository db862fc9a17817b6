"""docs/metrics.md's "A real example" is what the commands it shows print, to the last digit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from controller.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _example() -> tuple[list[str], str, str, dict[str, object]]:
    text = DOC.read_text()
    section = text.split("### A real example", 1)[1].split("### ", 1)[0]
    console = re.search(r"```console\n(.*?)```", section, re.S)
    decision = re.search(r"```json\n(.*?)```", section, re.S)
    assert console and decision, "the example section lost its console or json block"
    lines = console.group(1).splitlines()
    simulate = next(x for x in lines if x.startswith("$ vigil simulate")).split()[2:]
    sim_out = next(x for x in lines if x.startswith("simulate:"))
    replay_out = next(x for x in lines if x.startswith("replay:"))
    return simulate, sim_out, replay_out, json.loads(decision.group(1))


def test_the_documented_decision_is_what_replay_decides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    simulate, sim_out, replay_out, documented = _example()
    events = tmp_path / "doc.jsonl"
    args = [str(events) if a == "/tmp/doc.jsonl" else a for a in simulate]
    assert main(args) == 0
    assert sim_out.replace("/tmp/doc.jsonl", str(events)) in capsys.readouterr().err
    out = tmp_path / "decisions.jsonl"
    assert main(["replay", str(events), "--output", str(out)]) == 0
    assert replay_out in capsys.readouterr().err
    decided = [json.loads(x) for x in out.read_text().splitlines()]
    assert decided == [documented]
