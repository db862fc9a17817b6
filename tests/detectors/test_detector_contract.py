"""The contract every registered detector must pass (see ``detectors/base.py``), as river's detectors all
pass one shared test, whichever of the three contracts it follows (one stream, two samples, or stratified
2x2 tables as the live analysis's rate tests take them): ``update_many`` equals repeated ``update``; a
checkpoint resumes identically; a constant stream raises no alarm; invalid parameters are refused naming
the parameter; the docstring states the guarantee and carries a doctest."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import detectors  # importing the package registers every detector
from detectors.base import REGISTRY, ChangeDetector, TableTest, TwoSampleTest, from_state

NAMES = sorted(REGISTRY)


def make(name: str) -> Any:
    cls = REGISTRY[name]
    return cls(**cls._unit_test_params())


def stream(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "table":  # (n_c, k_c, n_s, k_s) rows: one-second buckets of a small canary, same rate
        n_c, n_s = rng.integers(0, 8, n), rng.integers(5, 40, n)
        return np.stack([n_c, rng.binomial(n_c, 0.2), n_s, rng.binomial(n_s, 0.2)], axis=1).astype(float)
    if kind == "binary":
        return (rng.random(n) < 0.2).astype(float)
    if kind == "count":
        return rng.poisson(3.0, n).astype(float)
    if kind == "ordinal":
        return rng.integers(1, 6, n).astype(float)
    if kind == "category":
        return rng.integers(0, 4, n).astype(float)
    # real: with a shift half way, so that alarms (and restarts) happen inside the stream
    return np.concatenate([rng.normal(0.0, 1.0, n // 2), rng.normal(3.0, 2.0, n - n // 2)])


def shifted(kind: str, xs: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The canary's observations made worse, so that two-sample tests alarm inside the stream."""
    out = xs.copy()
    m = int(labels.sum())
    if kind == "table":  # the labelled buckets' canary fails far more often
        out[labels, 1] = rng.binomial(out[labels, 0].astype(int), 0.7)
    elif kind == "binary":
        out[labels] = (rng.random(m) < 0.7).astype(float)
    elif kind == "count":
        out[labels] += 3.0
    elif kind == "ordinal":
        out[labels] = np.maximum(1.0, out[labels] - 2.0)
    elif kind == "category":
        out[labels] = np.where(rng.random(m) < 0.7, 0.0, out[labels])
    else:
        out[labels] += 4.0
    return out


def feed(det: Any, xs: np.ndarray, labels: np.ndarray | None, *, many: bool) -> list[int]:
    if isinstance(det, TableTest):
        if many:
            det.update_many(*xs.T)
        else:
            for row in xs:
                det.update(*(int(v) for v in row))
        return [int(det.alarm)]
    if isinstance(det, ChangeDetector):
        if many:
            return [int(i) for i in det.update_many(xs)]
        return [i for i, x in enumerate(xs) if det.update(float(x))]
    assert labels is not None
    if many:
        det.update_many(xs, labels)
    else:
        for x, c in zip(xs, labels, strict=True):
            det.update(float(x), bool(c))
    return [int(det.alarm)]


def same_state(a: Any, b: Any) -> None:
    sa, sb = a.to_state(), b.to_state()
    assert sa["detector"] == sb["detector"] and sa["params"] == sb["params"]
    np.testing.assert_allclose(_flat(sa["vars"]), _flat(sb["vars"]), rtol=1e-9, atol=1e-9)


def _flat(v: Any) -> list[float]:
    if isinstance(v, dict):
        return [x for k in sorted(v) for x in _flat(v[k])]
    if isinstance(v, list | tuple):
        return [x for item in v for x in _flat(item)]
    if isinstance(v, bool) or v is None:
        return [float(bool(v))]
    if isinstance(v, int | float):
        return [float(v)] if math.isfinite(v) else [1e300 if v > 0 else -1e300]
    return [float(len(str(v)))]


def test_the_registry_has_every_detector_module() -> None:
    import pkgutil

    modules = {m.name.rsplit(".", 1)[-1] for m in pkgutil.walk_packages(detectors.__path__, "detectors.")
               if not m.ispkg and not m.name.rsplit(".", 1)[-1].startswith("_")}
    modules -= {"base", "alpha", "blocks", "rate", "arl", "lindley", "cusum", "power"}  # numerics and bases
    registered = {REGISTRY[n].__module__.rsplit(".", 1)[-1] for n in NAMES}
    assert modules <= registered, f"detector modules not registered: {modules - registered}"


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 400), cut=st.floats(0, 1))
def test_update_many_equals_repeated_update(name: str, seed: int, n: int, cut: float) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    xs = shifted(REGISTRY[name].kind, stream(REGISTRY[name].kind, rng, n), labels, rng)
    one, many = make(name), make(name)
    expected = feed(one, xs, labels, many=False)
    k = int(cut * n)  # two chunks: the vectorized path must carry its state across calls
    got_first = feed(many, xs[:k], labels[:k], many=True)
    got_rest = feed(many, xs[k:], labels[k:], many=True)
    if isinstance(one, ChangeDetector):
        assert got_first + [i + k for i in got_rest] == expected
    else:
        assert got_rest == expected
    same_state(one, many)


def long_stream(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """A long stream with a change every fifth of the way (level and scale for real values)."""
    parts = []
    for i, size in enumerate(np.diff(np.linspace(0, n, 6).astype(int))):
        xs = stream(kind, rng, int(size))
        parts.append(xs * (1.0 + i % 2) + 2.0 * i if kind == "real" else xs)
    return np.concatenate(parts)


@pytest.mark.parametrize("name", NAMES)
def test_update_many_equals_repeated_update_on_a_long_stream(name: str) -> None:
    """Long chunks take the vectorized kernels that short ones never reach (column layouts, dense-alarm
    runs, block doubling); chunk edges fall at arbitrary places, one chunk far longer than the others."""
    rng = np.random.default_rng(11)
    one, many = make(name), make(name)
    two_sample = isinstance(one, TwoSampleTest | TableTest)
    n = 10_000 if two_sample else 30_000  # the per-observation path of the two-sample tests is the slow one
    labels = rng.random(n) < 0.3
    kind = REGISTRY[name].kind
    xs = long_stream(kind, rng, n)
    if two_sample:
        xs[n // 2:] = shifted(kind, xs[n // 2:], labels[n // 2:], rng)
    expected = feed(one, xs, labels, many=False)
    got: list[int] = []
    cuts = [0, 137, n * 2 // 3 + 137, n * 2 // 3 + 200, n]
    for a, b in zip(cuts, cuts[1:], strict=False):
        alarms = feed(many, xs[a:b], labels[a:b], many=True)
        got = got + [i + a for i in alarms] if isinstance(one, ChangeDetector) else alarms
    if isinstance(one, ChangeDetector):
        assert got == expected
        assert expected, "the changes in the stream must raise alarms"
    else:
        assert got == expected == [1], "the shifted canary must be caught within the stream"
    same_state(one, many)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_resumes_identically(name: str) -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(600) < 0.3
    xs = shifted(REGISTRY[name].kind, stream(REGISTRY[name].kind, rng, 600), labels, rng)
    whole, first = make(name), make(name)
    expected = feed(whole, xs, labels, many=False)
    head = feed(first, xs[:250], labels[:250], many=False)
    resumed = from_state(json.loads(json.dumps(first.to_state())))
    assert type(resumed) is type(first)
    tail = feed(resumed, xs[250:], labels[250:], many=False)
    if isinstance(whole, ChangeDetector):
        assert head + [i + 250 for i in tail] == expected
    else:
        assert tail == expected == [1], "the shifted canary must be caught within the stream"
    same_state(whole, resumed)


@pytest.mark.parametrize("name", NAMES)
def test_constant_stream_never_alarms(name: str) -> None:
    det = make(name)
    value = {"binary": 1.0, "count": 2.0, "ordinal": 4.0, "category": 1.0}.get(REGISTRY[name].kind, 7.25)
    xs = np.full(5000, value)
    if isinstance(det, TableTest):  # the same table again and again: both arms at one rate
        assert not det.update_many(*np.tile([5.0, 1.0, 45.0, 9.0], (5000, 1)).T) and not det.alarm
    elif isinstance(det, ChangeDetector):
        assert len(det.update_many(xs)) == 0 and not det.alarm
    else:
        labels = np.arange(5000) % 4 == 0
        assert not det.update_many(xs, labels) and not det.alarm


@pytest.mark.parametrize("name", NAMES)
def test_reset_forgets(name: str) -> None:
    rng = np.random.default_rng(5)
    det, fresh = make(name), make(name)
    xs = stream(REGISTRY[name].kind, rng, 300)
    feed(det, xs, rng.random(300) < 0.3, many=True)
    det.reset()
    same_state(det, fresh)


@pytest.mark.parametrize("name", NAMES)
def test_invalid_parameters_are_refused_naming_the_parameter(name: str) -> None:
    cls = REGISTRY[name]
    cases = cls._invalid_params()
    assert cases, f"{name} declares no invalid parameters to test"
    for kwargs, param in cases:
        with pytest.raises(ValueError, match=param):
            cls(**{**cls._unit_test_params(), **kwargs})


@pytest.mark.parametrize("name", NAMES)
def test_docstring_states_the_guarantee_and_has_an_example(name: str) -> None:
    doc = REGISTRY[name].__doc__ or ""
    assert ">>>" in doc
    if issubclass(REGISTRY[name], TwoSampleTest | TableTest):
        assert "alpha" in doc
    else:
        assert "average run length" in doc.lower() or "arl" in doc.lower()
