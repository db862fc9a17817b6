"""The command line: replay on a simulated file, config errors named by field, simulate's output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import main

VIGIL = [sys.executable, "-m", "controller.cli"]
DECISION_KEYS = {"time", "agent", "action", "version", "weights", "reason", "evidence", "examples"}
EVIDENCE_KEYS = {"metric", "detector", "statistic", "threshold", "p_value", "n_canary", "n_stable",
                 "canary_value", "stable_value"}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "events.jsonl"
    assert main(["simulate", "--output", str(path), "--duration", "400", "--rate", "40", "--seed", "3",
                 "--fault", "escalation:onset=120,magnitude=3"]) == 0
    return path


def test_replay_rolls_back_a_faulty_canary_with_evidence(faulty: Path, tmp_path: Path) -> None:
    out = tmp_path / "decisions.jsonl"
    proc = subprocess.run([*VIGIL, "replay", str(faulty), "--output", str(out)], capture_output=True, text=True,
                          check=True)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [d["action"] for d in lines] == ["rollback"]
    d = lines[0]
    assert set(d) == DECISION_KEYS
    assert d["agent"] == "support-bot" and d["version"] == "v2"
    assert d["weights"] == {"v1": 100.0, "v2": 0.0}
    assert d["evidence"] and all(set(e) == EVIDENCE_KEYS for e in d["evidence"])
    assert any(e["metric"] == "escalation_rate" for e in d["evidence"])
    for e in d["evidence"]:
        assert e["statistic"] >= e["threshold"] and e["p_value"] < 0.01
    esc = next(e for e in d["evidence"] if e["metric"] == "escalation_rate")
    # cumulative since the canary started, so diluted by the healthy first two minutes
    assert esc["canary_value"] > 1.3 * esc["stable_value"]
    assert d["examples"] and all(x.startswith("c-") for x in d["examples"])
    # the decision falls after the fault's onset (2026-11-26T00:02:00Z) and well before the file ends
    assert "2026-11-26T00:02:00" < d["time"] < "2026-11-26T00:04:00"
    assert "1 decisions" in proc.stderr and "0 invalid" in proc.stderr


@pytest.mark.parametrize("evidence", [True, False])
def test_replay_with_config_steps_then_rolls_back(faulty: Path, tmp_path: Path, evidence: bool) -> None:
    cfg = tmp_path / "rollout.yaml"
    cfg.write_text(f"""
apiVersion: vigil.dev/v1alpha1
kind: AgentRollout
metadata: {{name: bot}}
spec:
  agent: support-bot
  stable: {{version: v1}}
  canary: {{version: v2}}
  steps: [{{setWeight: 10}}, {{pause: {{duration: 60s}}}}, {{setWeight: 50}}, {{pause: {{duration: 10m}}}}]
  analysis: {{promotion: {{evidence: {str(evidence).lower()}}}}}
""")
    proc = subprocess.run([*VIGIL, "replay", str(faulty), "--config", str(cfg)], capture_output=True, text=True,
                          check=True)
    actions = [json.loads(x)["action"] for x in proc.stdout.splitlines()]
    # on evidence, the 10% step holds (too little data to catch a doubling) until the fault is caught there
    if evidence:
        assert actions[0] == "set_weight" and actions[-1] == "rollback" and set(actions[1:-1]) == {"pause"}
    else:
        assert actions == ["set_weight", "set_weight", "rollback"]


def test_replay_healthy_canary_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "healthy.jsonl"
    assert main(["simulate", "--output", str(path), "--duration", "300", "--rate", "40", "--seed", "5"]) == 0
    proc = subprocess.run([*VIGIL, "replay", str(path)], capture_output=True, text=True, check=True)
    assert proc.stdout == ""


def test_replay_incident_on_both_versions_is_not_a_rollback(tmp_path: Path) -> None:
    path = tmp_path / "incident.jsonl"
    assert main(["simulate", "--output", str(path), "--duration", "400", "--rate", "40", "--seed", "11",
                 "--fault", "incident:onset=100,duration=120"]) == 0
    proc = subprocess.run([*VIGIL, "replay", str(path)], capture_output=True, text=True, check=True)
    assert "rollback" not in proc.stdout


@pytest.mark.parametrize(("spec", "field"), [
    ("spec: {agent: a, stable: {version: v1}, canary: {version: v1}}", "spec.canary.version"),
    ("spec: {agent: a, stable: {version: v1}, canary: {version: v2}, analysis: {alpha: 2}}",
     "spec.analysis.alpha"),
    ("spec: {agent: a, stable: {version: v1}, canary: {version: v2}, steps: [{setWeight: 150}]}",
     "spec.steps[0].setWeight"),
    ("spec: {agent: a, stable: {version: v1}, canary: {version: v2}, bogus: 1}", "spec.bogus"),
])
def test_invalid_config_is_refused_naming_the_field(tmp_path: Path, faulty: Path, spec: str, field: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"apiVersion: vigil.dev/v1alpha1\nkind: AgentRollout\n{spec}\n")
    proc = subprocess.run([*VIGIL, "replay", str(faulty), "--config", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert field in proc.stderr and proc.stdout == ""


def test_replay_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([*VIGIL, "replay", str(tmp_path / "nope.jsonl")], capture_output=True, text=True)
    assert proc.returncode == 2 and "nope.jsonl" in proc.stderr


@pytest.mark.parametrize(("env", "says"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "sasl_mechanism"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN"}, "sasl_username"),
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "security_protocol"),
])
def test_run_refuses_incomplete_kafka_security_settings(env: dict[str, str], says: str) -> None:
    import os

    bad = subprocess.run([*VIGIL, "run", "--bootstrap", "127.0.0.1:1", "--http-port", "-1"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, **env})
    assert bad.returncode == 2 and says in bad.stderr, bad.stderr


def test_kafka_client_options_carry_the_security_settings() -> None:
    from controller.runtime.pipeline import PipelineSettings

    s = PipelineSettings(bootstrap="k:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                         sasl_username="vigil", sasl_password="pw")
    opts = s.client_options()
    assert opts["security_protocol"] == "SASL_SSL" and opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("vigil", "pw")
    assert "ssl_context" in opts and "pw" not in repr(s)
    assert PipelineSettings(bootstrap="k:9092").client_options() == {}


def _vigil(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([*VIGIL, *args], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("VIGIL_LOG")} | (env or {}))


def test_json_logs_carry_the_decision_fields_and_no_content(faulty: Path, tmp_path: Path) -> None:
    from controller.contracts.decisions import decision_id, decode

    out = tmp_path / "decisions.jsonl"
    proc = _vigil("replay", str(faulty), "--output", str(out), "--log-level", "info", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    decided = [decode(line.encode()) for line in out.read_text().splitlines()]
    logged = [d for d in docs if d.get("decision")]
    assert len(logged) == len(decided) == 1
    assert logged[0]["decision"] == decision_id(decided[0])
    assert logged[0]["agent"] == "support-bot" and logged[0]["action"] == "rollback" and logged[0]["version"] == "v2"
    assert {"time", "level", "logger", "message"} <= set(logged[0]) and logged[0]["level"] == "INFO"
    # conversation ids are evidence in the decision, never in the logs
    assert not any(x in proc.stderr for x in decided[0].examples)


def test_log_level_from_the_environment_applies_and_the_option_overrides_it(faulty: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "d.jsonl")
    quiet = _vigil("replay", str(faulty), "--output", out)
    assert quiet.returncode == 0 and "decision support-bot" not in quiet.stderr  # default WARNING
    loud = _vigil("replay", str(faulty), "--output", out, env={"VIGIL_LOG_LEVEL": "INFO"})
    assert loud.returncode == 0 and "INFO vigil.cli: decision support-bot rollback v2" in loud.stderr
    json_env = _vigil("replay", str(faulty), "--output", out,
                      env={"VIGIL_LOG_LEVEL": "INFO", "VIGIL_LOG_FORMAT": "json"})
    assert any(json.loads(x).get("action") == "rollback" for x in json_env.stderr.splitlines() if x.startswith("{"))
    told = _vigil("replay", str(faulty), "--output", out, "--log-level", "ERROR", env={"VIGIL_LOG_LEVEL": "INFO"})
    assert told.returncode == 0 and "decision support-bot" not in told.stderr


@pytest.mark.parametrize(("args", "env", "named"), [
    (["--log-level", "TRACE"], {}, "--log-level"),
    (["--log-format", "xml"], {}, "--log-format"),
    ([], {"VIGIL_LOG_LEVEL": "LOUD"}, "VIGIL_LOG_LEVEL"),
    ([], {"VIGIL_LOG_FORMAT": "xml"}, "VIGIL_LOG_FORMAT"),
])
def test_invalid_log_settings_are_refused_with_their_name(args: list[str], env: dict[str, str], named: str,
                                                          faulty: Path) -> None:
    proc = _vigil("replay", str(faulty), "--output", "-", *args, env=env)
    assert proc.returncode == 2 and named in proc.stderr and "Traceback" not in proc.stderr


def test_a_runtime_failure_is_one_line_and_exit_code_1_not_a_traceback() -> None:
    proc = _vigil("run", "--bootstrap", "127.0.0.1:1", "--http-port", "-1")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("vigil run: error:")]
    assert errors == ["vigil run: error: KafkaConnectionError: Unable to bootstrap from "
                      "[('127.0.0.1', 1, <AddressFamily.AF_INET: 2>)]"]
    debug = _vigil("run", "--bootstrap", "127.0.0.1:1", "--http-port", "-1", "--log-level", "DEBUG")
    assert debug.returncode == 1 and "Traceback" in debug.stderr  # asked for: the traceback is logged
