"""The ``vigil`` command line: replay, simulate, detect, run, demo.

Exit codes: 0 done; 2 invalid usage or configuration (the option or field named); 1 a runtime failure
(one line on stderr, the traceback only with ``--log-level DEBUG``); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from controller import __version__, logs
from controller.config import ConfigError, load_rollouts
from controller.tools.broker import BrokerNotInstalled

if TYPE_CHECKING:
    from controller.runtime.pipeline import PipelineSettings
    from controller.worker import KubeMode

__all__ = ["main"]

log = logging.getLogger("vigil.cli")


def _error(message: str) -> int:
    print(f"vigil: error: {message}", file=sys.stderr)
    return 2


def _replay(args: argparse.Namespace) -> int:
    from controller.contracts.decisions import encode, log_fields
    from controller.replay import ReplayStats, replay

    try:
        rollouts = load_rollouts(args.config)
    except ConfigError as exc:
        return _error(str(exc))
    stats = ReplayStats()
    out = sys.stdout.buffer if args.output in (None, "-") else open(args.output, "wb")  # noqa: SIM115
    count = 0
    try:
        names = {r.agent: r.name for r in rollouts}
        for d in replay(args.events, rollouts, stats):
            out.write(encode(d) + b"\n")
            log.info("decision %s %s %s: %s", d.agent, d.action, d.version, d.reason,
                     extra=log_fields(d, names.get(d.agent)))
            count += 1
    except OSError as exc:
        return _error(f"cannot read {args.events}: {exc.strerror or exc}")
    except ValueError as exc:
        return _error(str(exc))
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(stats.invalid_reasons.items(), key=lambda kv: -kv[1]))
    print(f"replay: {stats.events} events, {stats.invalid} invalid{f' ({reasons})' if reasons else ''}, "
          f"{stats.late} late, {count} decisions, {stats.withheld} rollbacks withheld by spec.rollback",
          file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    from controller.actuators.memory import InMemoryCluster
    from controller.tools.broker import EmbeddedBroker
    from controller.worker import Worker

    try:
        rollouts = load_rollouts(args.config)
        _settings(args, "check:0")  # refused here, before a broker is started
    except (ConfigError, ValueError) as exc:
        return _error(str(exc))
    broker = None
    if args.bootstrap is None:
        broker = EmbeddedBroker().start()
        print(f"vigil run: embedded broker on {broker.bootstrap}", file=sys.stderr)
    try:
        settings = _settings(args, broker.bootstrap if broker is not None else args.bootstrap)
        kube = _kube_mode(args) if args.cluster == "kubernetes" else None
        worker = Worker(settings, rollouts, InMemoryCluster(),
                        http_port=None if args.http_port < 0 else args.http_port, http_host=args.http_host,
                        kube=kube, admin_token=os.environ.get("VIGIL_ADMIN_TOKEN") or None)
        asyncio.run(worker.run(handle_signals=True))
    finally:
        if broker is not None:
            broker.stop()
    return 0


def _settings(args: argparse.Namespace, bootstrap: str) -> PipelineSettings:
    """The pipeline's settings: Kafka security from the environment (the chart's ConfigMap and Secret), so
    credentials stay out of the command line."""
    from controller.runtime.pipeline import PipelineSettings

    return PipelineSettings(
        bootstrap=bootstrap, topic=args.topic, decisions_topic=args.decisions_topic, group=args.group,
        partitions=args.partitions,
        security_protocol=os.environ.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT",
        sasl_mechanism=os.environ.get("KAFKA_SASL_MECHANISM") or None,
        sasl_username=os.environ.get("KAFKA_SASL_USERNAME") or None,
        sasl_password=os.environ.get("KAFKA_SASL_PASSWORD") or None)


def _kube_mode(args: argparse.Namespace) -> KubeMode:
    """Kubernetes mode's settings: credentials (in-cluster, a kubeconfig, or a plain API URL for tests and
    local emulators), where to read AgentRollouts, and this replica's Lease identity."""
    import socket

    from controller.actuators.kubernetes.api import api_client
    from controller.actuators.kubernetes.lease import LeaseSettings
    from controller.worker import KubeMode

    client = api_client(args.kube_api, args.kubeconfig)
    lease = LeaseSettings(namespace=args.lease_namespace, name=args.lease_name,
                          identity=args.identity or socket.gethostname())
    return KubeMode(client=client, lease=lease, watch_namespace=args.namespace or None)


def _demo(args: argparse.Namespace) -> int:
    from controller.tools.demo import run_demo

    return asyncio.run(run_demo(fault=not args.no_fault, rate=args.rate, seed=args.seed))


def build_parser() -> argparse.ArgumentParser:
    from controller.tools import detect, simulate

    parser = argparse.ArgumentParser(prog="vigil", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vigil {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("replay", help="decide on a recorded JSON lines file of events, in event time")
    p.add_argument("events", help="JSON lines file of events (CloudEvents structured, or bare with time)")
    p.add_argument("--config", action="append", default=[], metavar="ROLLOUT.yaml",
                   help="AgentRollout file (repeatable); without it, roles come from each event's track")
    p.add_argument("--output", "-o", metavar="FILE", help="write decision lines here (default stdout)")
    p.set_defaults(func=_replay)

    simulate.register(sub)
    detect.register(sub)

    p = sub.add_parser("run", help="the live worker: Kafka in, decisions and cluster actions out")
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (default: start the "
                   "embedded broker)")
    p.add_argument("--topic", default="vigil.events", help="events topic (default vigil.events)")
    p.add_argument("--decisions-topic", default="vigil.decisions", help="default vigil.decisions")
    p.add_argument("--group", default="vigil", help="consumer group prefix (default vigil)")
    p.add_argument("--partitions", type=int, default=3, help="partitions of topics vigil creates (default 3)")
    p.add_argument("--config", action="append", default=[], metavar="ROLLOUT.yaml",
                   help="AgentRollout file (repeatable); without it every agent is watched by track")
    p.add_argument("--kube-api", metavar="URL", help="Kubernetes API server URL without credentials (an emulator "
                   "or kubectl proxy); default: in-cluster credentials, or --kubeconfig")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file for --cluster kubernetes outside a pod")
    p.add_argument("--namespace", default=os.environ.get("VIGIL_WATCH_NAMESPACE", ""),
                   help="read AgentRollouts in this namespace only (default: all; env VIGIL_WATCH_NAMESPACE)")
    p.add_argument("--lease-name", default=os.environ.get("VIGIL_LEASE_NAME", "vigil-leader"),
                   help="the Lease the replicas elect their leader with (env VIGIL_LEASE_NAME)")
    p.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "default"),
                   help="namespace of the Lease (env POD_NAMESPACE)")
    p.add_argument("--identity", default=os.environ.get("POD_NAME", ""),
                   help="this replica's identity on the Lease (env POD_NAME; default the host name)")
    p.add_argument("--cluster", choices=["memory", "kubernetes"], default="memory",
                   help="where decisions are carried out: memory (no cluster) or kubernetes (AgentRollouts, "
                        "one leader acting through a Lease)")
    p.add_argument("--http-port", type=int, default=8080, help="metrics/health port; -1 disables")
    p.add_argument("--http-host", default="127.0.0.1", help="address to serve HTTP on (default 127.0.0.1)")
    p.set_defaults(func=_run)

    p = sub.add_parser("demo", help="embedded broker + simulator + worker: watch a bad canary rolled back")
    p.add_argument("--no-fault", action="store_true", help="a healthy canary: expect promotion, no rollback")
    p.add_argument("--rate", type=float, default=80.0, help="events per second (default 80)")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=_demo)
    _add_log_options(sub)
    return parser


#: The level each command logs at unless told otherwise: the live worker says what it does; the others print
#: their own results and log only what goes wrong.
_DEFAULT_LEVEL = {"run": "INFO"}


def _add_log_options(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for p in sub.choices.values():
        g = p.add_argument_group("logging")
        g.add_argument("--log-level", type=str.upper, choices=logs.LEVELS, default=None,
                       help="DEBUG, INFO, WARNING, ERROR or CRITICAL (env VIGIL_LOG_LEVEL; default INFO for run, "
                            "WARNING otherwise)")
        g.add_argument("--log-format", type=str.lower, choices=logs.FORMATS, default=None,
                       help="text or json, one object per line (env VIGIL_LOG_FORMAT; default text)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args: Any = parser.parse_args(argv)
    try:
        logs.configure(args.log_level, args.log_format, _DEFAULT_LEVEL.get(args.command, "WARNING"))
    except ValueError as exc:  # from the environment: the options themselves are checked by argparse
        return _error(str(exc).replace("--log-level", "VIGIL_LOG_LEVEL").replace("--log-format", "VIGIL_LOG_FORMAT"))
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokerNotInstalled as exc:  # `vigil demo`, `vigil run` without --bootstrap: say what to install
        hint = " (or give a Kafka with --bootstrap)" if args.command == "run" else ""
        print(f"vigil {args.command}: error: {exc}{hint}", file=sys.stderr)
        return 1
    except Exception as exc:  # a runtime failure: one clear line, the traceback only when asked for
        log.debug("%s failed", args.command, exc_info=True)
        what = str(exc) if str(exc).startswith(type(exc).__name__) else f"{type(exc).__name__}: {exc}"
        print(f"vigil {args.command}: error: {what}".rstrip(": "), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
