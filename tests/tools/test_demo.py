"""`vigil demo`, the README's first command: a faulty canary rolled back within 90 s of the fault's onset,
and a healthy one promoted, each on its own embedded broker, in real time (about a minute each)."""

from __future__ import annotations

import io
import re

import pytest

from controller.tools.demo import run_demo

# each run starts an embedded broker of its own (not the session's fixture) and lasts about a minute
pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def test_demo_rolls_back_the_faulty_canary_within_90_s_of_the_fault() -> None:
    out = io.StringIO()
    assert await run_demo(fault=True, out=out) == 0
    text = out.getvalue()
    assert "DECISION ROLLBACK support-bot v2" in text
    delay = float(re.search(r"rolled back ([\d.]+) s after the fault's onset", text).group(1))  # type: ignore[union-attr]
    assert 0 < delay < 90
    assert "PROMOTE" not in text and "vigil demo: ROLLED BACK" in text


async def test_demo_without_a_fault_promotes_and_never_rolls_back() -> None:
    out = io.StringIO()
    assert await run_demo(fault=False, out=out) == 0
    text = out.getvalue()
    assert "ROLLBACK" not in text
    assert text.count("DECISION SET_WEIGHT") == 3 and "DECISION PROMOTE support-bot v2" in text
