"""The Dockerfile is not built on this machine (no Docker daemon); these checks read it for the
properties the deployment relies on."""
from __future__ import annotations

import ast
import fnmatch
import re
import shlex

import pytest
import yaml

from mmserver.config import Config
from tests.ops.files import REPO, Stage, parse_dockerfile

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "python3-dev", "libc6-dev")


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    _args, parsed = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    return parsed


@pytest.fixture(scope="module")
def final(stages) -> Stage:
    return stages[-1]


def _env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.arguments):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def test_multi_stage_on_slim_python(stages, final) -> None:
    assert len(stages) >= 2
    assert stages[0].name == "builder"
    assert final.base == "python:3.11-slim"
    assert any("pip wheel" in i.arguments for i in stages[0].all("RUN"))


def test_final_stage_has_no_build_tools(final) -> None:
    for instruction in final.all("RUN"):
        words = set(re.split(r"[\s;&|]+", instruction.arguments))
        assert not words & set(BUILD_TOOLS), instruction.arguments
        assert "apt-get install" not in instruction.arguments
    installs = [i.arguments for i in final.all("RUN") if "pip install" in i.arguments]
    assert installs and all("--no-index" in line and "from=builder" in line for line in installs)


def test_entrypoint_is_exec_form(final) -> None:
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint.exec_form() == ["mmserver"]
    for cmd in final.all("CMD"):
        assert cmd.exec_form() is not None


def test_runs_as_the_non_root_uid_the_pods_expect(final) -> None:
    (user,) = final.all("USER")
    uid = user.arguments.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root uid lets runAsNonRoot check it"
    deployment = next(
        d for d in yaml.safe_load_all((REPO / "k8s" / "30-mmserver.yaml").read_text()) if d["kind"] == "Deployment"
    )
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_ports_and_environment(final) -> None:
    exposed = {int(p.split("/")[0]) for i in final.all("EXPOSE") for p in i.arguments.split()}
    assert exposed == {8080, 8081}
    env = _env(final)
    assert env["MMSERVER_LISTEN"] == "0.0.0.0:8080"
    assert env["MMSERVER_DATA_DIR"] == "/var/lib/mmserver"
    assert int(env["MMSERVER_LISTEN"].rpartition(":")[2]) in exposed


def test_healthcheck_asks_the_control_plane_listener(final) -> None:
    """Its workers are its own: busy public workers and a frozen Redis cannot time the check out
    (tests/process/test_probes.py). The image leaves the control plane on its default address."""
    (check,) = final.all("HEALTHCHECK")
    assert "MMSERVER_ADMIN_LISTEN" not in _env(final)
    default_admin = Config().admin_listen
    assert f"http://127.0.0.1:{default_admin.port}/healthz" in check.arguments


def _setup_source_dirs() -> set[str]:
    """Top-level folders setup.py installs packages from (packages= and package_dir=)."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("packages", "package_dir")}
    package_dir = keywords.get("package_dir", {})
    dirs = set()
    for package in keywords["packages"]:
        top = package.split(".")[0]
        dirs.add(package_dir.get(top, top).split("/")[0])
    return dirs


def test_builder_copies_every_installed_package_and_nothing_ignored(stages) -> None:
    copied = set()
    for instruction in stages[0].all("COPY"):
        sources = instruction.arguments.split()[:-1]
        copied.update(s.rstrip("/") for s in sources if not s.startswith("--"))
    assert {"setup.py"} | _setup_source_dirs() <= copied
    ignored = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".git", ".venv", "var"} <= set(ignored)
    for source in copied:
        assert (REPO / source).exists(), source
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source


def test_setup_installs_every_package_on_disk() -> None:
    """A regular install (the image's) gets only the packages setup.py names: a new package
    folder left out would import in an editable checkout and fail in the image."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    listed = next(ast.literal_eval(k.value) for k in call.keywords if k.arg == "packages")
    on_disk = {".".join(init.parent.relative_to(REPO).parts)
               for init in (REPO / "mmserver").rglob("__init__.py")}
    on_disk |= {"mmserver_admin"} if (REPO / "admin" / "__init__.py").exists() else set()
    assert on_disk == set(listed)
