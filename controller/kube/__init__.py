"""The Kubernetes backend: vigil's decisions carried out on a cluster, behind the same
:class:`~controller.cluster.ClusterBackend` interface as the in-memory cluster.

Modules: ``errors`` (what can fail and whether to retry), ``retry`` (bounded backoff), ``target`` (where one
rollout lives), ``api`` (the client calls, off the event loop), ``routers`` (HTTPRoute, VirtualService,
replica ratio), ``rollback``, ``status`` (the AgentRollout status and Events), ``backend``, and ``lease``
(leader election among the controller's replicas).
"""

from controller.kube.backend import KubernetesCluster
from controller.kube.errors import ConflictError, KubeError, NotFoundError, PermanentError, TemporaryError
from controller.kube.lease import LeaderElection, LeaseSettings
from controller.kube.retry import RetryPolicy, with_retries
from controller.kube.routers import TrafficRouter
from controller.kube.status import RollbackState
from controller.kube.target import KubeTarget, RouterKind

__all__ = ["ConflictError", "KubeError", "KubeTarget", "KubernetesCluster", "LeaderElection", "LeaseSettings",
           "NotFoundError", "PermanentError", "RetryPolicy", "RollbackState", "RouterKind", "TemporaryError",
           "TrafficRouter", "with_retries"]
