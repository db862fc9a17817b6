"""The verdict document: vigil's verdict on one rollout, as the HTTP API answers it and the verdicts topic carries it.

:func:`controller.engine.verdict.verdict_of` builds it from the engine's state; the state stage publishes it
(JSON, keyed by agent) to the compacted verdicts topic, which :mod:`controller.runtime.verdicts` reads in
every replica. The JSON is camelCase; ``canaryWeight`` is present only once the rollout has a stable and a
canary version (with a policy), after the other fields, as it always was.

An agent in track mode may have several canary versions judged at once. Its document then also lists each
one's own verdict in ``canaries`` (:class:`CanaryVerdict`, last), and its top-level fields answer for the
worst canary (``unhealthy`` before ``inconclusive`` before ``healthy``, the earliest judged first among
equals): ``rollback`` is true when any canary must be rolled back, ``healthy`` only when every canary is
healthy. With one canary ``canaries`` is absent, so the document is exactly what it always was.

>>> doc = VerdictDocument(namespace="shop", name="bot", agent="bot", updated=None)
>>> encode(doc)[:60]
b'{"namespace":"shop","name":"bot","agent":"bot","verdict":"un'
>>> decode(encode(doc)) == doc
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from controller.contracts.decisions import Evidence

__all__ = ["CanaryVerdict", "Verdict", "VerdictDocument", "VerdictEvidence", "decode", "encode", "evidence_of"]

Verdict = Literal["healthy", "unhealthy", "inconclusive", "unknown"]


if TYPE_CHECKING:
    VerdictEvidence = Evidence
else:
    # One test's view, as the verdict shows it: the fields of a decision's evidence (one schema), camelCase
    VerdictEvidence = msgspec.defstruct(
        "VerdictEvidence", [(f.name, f.type) for f in msgspec.structs.fields(Evidence)], rename="camel",
        frozen=True, module=__name__)


def evidence_of(ev: Evidence) -> VerdictEvidence:
    """A decision's evidence as the verdict shows it."""
    return VerdictEvidence(ev.metric, ev.detector, ev.statistic, ev.threshold, ev.p_value, ev.n_canary,
                           ev.n_stable, ev.canary_value, ev.stable_value)


class CanaryVerdict(msgspec.Struct, kw_only=True, rename="camel"):
    """The verdict on one canary version of an agent with several: the top-level fields of a one-canary
    document, for that canary."""

    canary: str
    verdict: Verdict = "unknown"
    healthy: bool = False
    rollback: bool = False
    phase: str = "pending"
    canary_samples: int = 0
    enough_samples: bool = False
    alarms: list[str] = msgspec.field(default_factory=list)
    evidence: list[VerdictEvidence] = msgspec.field(default_factory=list)
    canary_weight: int | float = 0.0


class VerdictDocument(msgspec.Struct, kw_only=True, rename="camel"):
    """The verdict on one rollout, answering for ``namespace/name``.

    ``updated`` is the event time up to which the agent's buckets are closed (None before the first one).
    """

    namespace: str | None
    name: str
    agent: str
    verdict: Verdict = "unknown"
    healthy: bool = False
    rollback: bool = False
    phase: str = "pending"
    stable: str | None = None
    canary: str | None = None
    canary_samples: int = 0
    enough_samples: bool = False
    alarms: list[str] = msgspec.field(default_factory=list)
    evidence: list[VerdictEvidence] = msgspec.field(default_factory=list)
    updated: int | float | None = None  # int | float: a number decodes as it was written, and encodes back so
    canary_weight: int | float | msgspec.UnsetType = msgspec.UNSET
    """The canary's traffic weight; unset (absent from the JSON) before the rollout has a policy."""
    canaries: list[CanaryVerdict] | msgspec.UnsetType = msgspec.UNSET
    """With several canary versions judged at once, each one's verdict in order of admission; unset (absent
    from the JSON) with one canary or none."""


#: The JSON of a document, as the verdicts topic and the HTTP API carry it.
encode = msgspec.json.Encoder().encode
#: The document in some JSON; ``msgspec.DecodeError`` (``ValidationError`` for a wrong shape) if it is none.
decode = msgspec.json.Decoder(VerdictDocument).decode
