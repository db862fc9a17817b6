"""The Kubernetes calls' retries: the project's one retry loop (:mod:`controller.retry`) with the policy for the
API server, :data:`controller.retry.KUBE` (5 tries, 0.1 s doubling up to 5 s, 20 % jitter).

Only a :class:`~controller.actuators.kubernetes.errors.TemporaryError` (a 409 conflict included) is retried, being
the project's :class:`~controller.errors.TemporaryError`; a
:class:`~controller.actuators.kubernetes.errors.PermanentError` goes straight up. Every operation re-reads the
object on each try, so a retry after a conflict applies the change to the fresh version instead of replaying a
stale write. The names are re-exported here for the modules of this package.
"""

from __future__ import annotations

from controller.retry import KUBE, Retrier, RetryPolicy, Sleep, with_retries

__all__ = ["KUBE", "Retrier", "RetryPolicy", "Sleep", "with_retries"]
