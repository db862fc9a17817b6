"""A pytest plugin for tests/test_markers.py: after collection (and so after conftest.py's hook gave every test
its kind), write each collected test's node id, marks and fixtures as JSON to the file named by
``$VIGIL_COLLECTED_OUT``. Loaded with ``-p tests.support.collected``; it does nothing without the variable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ENV = "VIGIL_COLLECTED_OUT"


def pytest_collection_finish(session: pytest.Session) -> None:
    out = os.environ.get(ENV)
    if not out:
        return
    Path(out).write_text(json.dumps([
        {"nodeid": item.nodeid, "marks": sorted({m.name for m in item.iter_markers()}),
         "fixtures": sorted(getattr(item, "fixturenames", ()))}
        for item in session.items]))
