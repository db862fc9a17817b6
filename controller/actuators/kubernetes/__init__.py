"""The Kubernetes backend: vigil's decisions carried out on a cluster, behind the same
:class:`~controller.actuators.protocol.ClusterBackend` interface as the in-memory cluster.

Modules: ``errors`` (what can fail and whether to retry), ``retry`` (the API server's retry policy),
``target`` (where one rollout lives), ``api`` (the client calls, off the event loop), ``routers`` (HTTPRoute,
VirtualService, replica ratio), ``rollback``, ``status`` (the AgentRollout status and Events), ``backend``, and
``lease`` (leader election among the controller's replicas).
"""

from controller.actuators.kubernetes.backend import KubernetesCluster
from controller.actuators.kubernetes.errors import (
           ConflictError,
           KubeError,
           NotFoundError,
           PermanentError,
           TemporaryError,
)
from controller.actuators.kubernetes.lease import LeaderElection, LeaseSettings
from controller.actuators.kubernetes.retry import RetryPolicy, with_retries
from controller.actuators.kubernetes.routers import TrafficRouter
from controller.actuators.kubernetes.status import RollbackState
from controller.actuators.kubernetes.target import KubeTarget, RouterKind

__all__ = ["ConflictError", "KubeError", "KubeTarget", "KubernetesCluster", "LeaderElection", "LeaseSettings",
           "NotFoundError", "PermanentError", "RetryPolicy", "RollbackState", "RouterKind", "TemporaryError",
           "TrafficRouter", "with_retries"]
