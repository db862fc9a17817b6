"""The one error tree (controller/errors.py): every project exception under VigilError, the Kubernetes and webhook
branches under the project's TemporaryError and PermanentError, the input errors still ValueErrors."""

from __future__ import annotations

import pytest

from controller.actuators.kubernetes import errors as kube
from controller.config import ConfigError
from controller.contracts.events import InvalidEvent
from controller.errors import PermanentError, TemporaryError, VigilError
from controller.tools.broker import BrokerError
from controller.tools.detect import DetectError


@pytest.mark.parametrize(("cls", "kind"), [
    (kube.TemporaryError, TemporaryError), (kube.ConflictError, TemporaryError),
    (kube.PermanentError, PermanentError), (kube.NotFoundError, PermanentError),
])
def test_the_kubernetes_errors_are_the_projects_temporary_and_permanent_errors(cls: type, kind: type) -> None:
    err = cls("503 ServiceUnavailable: etcd is slow", status=503)
    assert isinstance(err, kind) and isinstance(err, kube.KubeError) and isinstance(err, VigilError)
    assert not isinstance(err, PermanentError if kind is TemporaryError else TemporaryError)
    assert err.message == str(err) == "503 ServiceUnavailable: etcd is slow" and err.status == 503


def test_the_input_errors_stay_what_they_were() -> None:
    assert isinstance(ConfigError("spec.canary", "required"), ValueError)
    assert str(ConfigError("spec.canary", "required")) == "spec.canary: required"
    assert ConfigError("spec.canary", "required").path == "spec.canary"
    assert isinstance(InvalidEvent("no agent"), ValueError) and InvalidEvent("no agent").reason == "no agent"
    assert isinstance(DetectError("x.csv is empty"), ValueError)
    assert isinstance(BrokerError("did not listen"), RuntimeError)
    for err in (ConfigError("a", "b"), InvalidEvent("r"), DetectError("d"), BrokerError("b")):
        assert isinstance(err, VigilError) and not isinstance(err, TemporaryError | PermanentError)


def test_giving_up_keeps_the_class_and_the_fields() -> None:
    err = kube.ConflictError("409 Conflict: modified", status=409, reason="Conflict", retry_after=0.5)
    out = err.gave_up(4)
    assert type(out) is kube.ConflictError and out is not err
    assert (out.message, str(out), out.status, out.reason, out.retry_after, out.attempts) == (
        "gave up after 4 attempts: 409 Conflict: modified", "gave up after 4 attempts: 409 Conflict: modified",
        409, "Conflict", 0.5, 4)
    assert (err.message, err.attempts) == ("409 Conflict: modified", 1)  # the original is left as it was
