"""Fixtures only (helpers live in tests/support/): one real embedded broker (Tansu) per test session, on a free
loopback port; the emulated Kubernetes API; unique names. And the hook giving every test its kind (see
CONTRIBUTING.md): an explicit mark wins, else the fixtures it uses, else its folder, else ``unit``."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.tools.broker import EmbeddedBroker

_counter = itertools.count()

KINDS = ("unit", "kafka", "kubernetes", "helm")
"""The kinds of test; each test has exactly one. ``slow`` is on top of the kind."""
_BY_FIXTURE = (("emu", "kubernetes"), ("client", "kubernetes"), ("broker", "kafka"))
_BY_FOLDER = {"helm": "helm"}
_HERE = Path(__file__).resolve().parent


def kind_of(item: pytest.Item) -> str:
    """The kind of a collected test: its explicit mark, else by fixture, else by folder, else ``unit``."""
    marked = [k for k in KINDS if item.get_closest_marker(k) is not None]
    if marked:
        return marked[0]
    fixtures = set(getattr(item, "fixturenames", ()))
    for fixture, kind in _BY_FIXTURE:
        if fixture in fixtures:
            return kind
    try:
        folder = Path(str(item.path)).resolve().relative_to(_HERE).parts[0]
    except ValueError:
        folder = ""
    return _BY_FOLDER.get(folder, "unit")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(k) for k in KINDS):
            item.add_marker(kind_of(item))


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    """The emulated Kubernetes API (tests/support/kube_emulator.py), one per test module."""
    from tests.support.kube_emulator import EmulatorThread

    e = EmulatorThread().start()
    yield e
    e.stop()


@pytest.fixture
def client(emu: Any) -> Iterator[Any]:
    """An official-client ``ApiClient`` on the emulated API."""
    c = emu.api_client()
    yield c
    c.close()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names that no other test uses (topics, groups), so tests share the broker safely."""
    run = uuid.uuid4().hex[:6]
    return lambda prefix: f"{prefix}-{run}-{next(_counter)}"
