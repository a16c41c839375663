"""Offline checks of systemd/: the unit verifies, its sandbox scores, and its numbers agree
with the environment example and with mmserver's own configuration."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmserver.config import SETTINGS, ConfigError, env_name, load
from tests.ops.files import (
    REPO, commented_env_names, parse_env_file, parse_unit, single, timespan_seconds, values,
)

UNIT_PATH = REPO / "systemd" / "mmserver.service"
ENV_PATH = REPO / "systemd" / "mmserver.env"
TOML_PATH = REPO / "systemd" / "mmserver.toml"
INSTALLED_EXEC = "/opt/mmserver/.venv/bin/mmserver"
MAX_EXPOSURE = 2.0
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


@pytest.fixture(scope="module")
def unit() -> dict[str, list[tuple[str, str]]]:
    return parse_unit(UNIT_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def env_file() -> dict[str, str]:
    return parse_env_file(ENV_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def local_unit(tmp_path: Path) -> Path:
    """The unit as shipped, but started from this checkout's mmserver (verify checks that the
    ExecStart binary exists, and /opt/mmserver is not installed here)."""
    local_exec = Path(sys.executable).parent / "mmserver"
    assert local_exec.exists(), f"{local_exec} missing: run pip install -e '.[test]'"
    text = UNIT_PATH.read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED_EXEC}\n" in text
    path = tmp_path / "mmserver.service"
    path.write_text(text.replace(f"ExecStart={INSTALLED_EXEC}", f"ExecStart={local_exec}"), encoding="utf-8")
    return path


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    return subprocess.run([SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=15, env=env)


@needs_systemd_analyze
def test_unit_verifies_without_any_complaint(local_unit: Path) -> None:
    result = _analyze("verify", "--man=no", str(local_unit))
    # verify exits 0 on unknown keys and unparsable values, only printing them: any line that
    # names the unit file counts as a failure too.
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if local_unit.name in line]
    assert result.returncode == 0, result.stdout + result.stderr
    assert complaints == []


@needs_systemd_analyze
def test_verify_does_catch_a_broken_unit(tmp_path: Path, local_unit: Path) -> None:
    # Guards the check above: the same call must notice a misspelt directive.
    broken = tmp_path / "broken" / "mmserver.service"
    broken.parent.mkdir()
    broken.write_text(local_unit.read_text().replace("KillMode=mixed", "KilMode=mixed"))
    result = _analyze("verify", "--man=no", str(broken))
    assert "KilMode" in result.stdout + result.stderr


@needs_systemd_analyze
def test_sandbox_exposure_is_at_most_2(local_unit: Path) -> None:
    result = _analyze("security", "--offline=true", "--no-pager", str(local_unit))
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


def test_lifecycle_directives(unit) -> None:
    service = unit["Service"]
    assert single(service, "Type") == "notify"
    assert single(service, "NotifyAccess") == "main"
    assert single(service, "ExecStart") == INSTALLED_EXEC
    assert single(service, "KillMode") == "mixed"
    assert single(service, "Restart") == "on-failure"
    prevent = single(service, "RestartPreventExitStatus").split()
    assert "2" in prevent, "exit 2 is a configuration error: restarting cannot fix it"
    assert "1" not in prevent, "exit 1 means restart me"
    assert timespan_seconds(single(service, "WatchdogSec")) > 0


def test_start_limit_survives_a_crash_loop(unit) -> None:
    # In [Unit]: in [Service] systemd 230+ ignores them with a warning.
    for key in ("StartLimitIntervalSec", "StartLimitBurst", "StartLimitInterval"):
        assert values(unit["Service"], key) == [], f"{key} belongs in [Unit]"
    interval = timespan_seconds(single(unit["Unit"], "StartLimitIntervalSec"))
    burst = int(single(unit["Unit"], "StartLimitBurst"))
    restart_sec = timespan_seconds(single(unit["Service"], "RestartSec"))
    # Automatic restarts alone must never reach the limit (a long Redis outage means many exit
    # 1s in a row): burst starts spaced RestartSec apart take longer than the interval.
    assert restart_sec >= 1
    assert burst * restart_sec > interval


def test_stop_timeout_exceeds_drain_delay_plus_shutdown_timeout(unit, env_file) -> None:
    drain = float(env_file[env_name("drain_delay_s")])
    shutdown = float(env_file[env_name("shutdown_timeout_s")])
    stop = timespan_seconds(single(unit["Service"], "TimeoutStopSec"))
    assert stop > drain + shutdown


def test_secrets_come_as_credentials(unit, env_file) -> None:
    service = unit["Service"]
    credentials = dict(value.split(":", 1) for value in values(service, "LoadCredential"))
    environment = dict(value.split("=", 1) for value in values(service, "Environment"))
    assert environment[env_name("admin_token_file")] == "%d/admin-token"
    assert environment[env_name("config")] == "%d/mmserver.toml"
    for path in (environment[env_name("admin_token_file")], environment[env_name("config")]):
        assert path.removeprefix("%d/") in credentials
    # EnvironmentFile= overrides Environment=: the example must not shadow what the unit sets.
    assert not set(environment) & set(env_file)
    assert env_name("admin_token") not in env_file


def test_state_directory_is_the_data_dir(unit) -> None:
    service = unit["Service"]
    environment = dict(value.split("=", 1) for value in values(service, "Environment"))
    state = single(service, "StateDirectory")
    assert environment[env_name("data_dir")] == f"%S/{state}"
    assert single(service, "DynamicUser") == "yes"


def test_env_example_names_only_known_settings() -> None:
    text = ENV_PATH.read_text(encoding="utf-8")
    known = {env_name(name) for name, _convert, _help in SETTINGS}
    named = set(parse_env_file(text)) | commented_env_names(text)
    assert named, "no MMSERVER_ variables found"
    assert named <= known, f"unknown: {sorted(named - known)}"


def test_unit_and_examples_build_a_valid_config(unit, env_file, tmp_path: Path) -> None:
    """What mmserver would see when started by this unit with the shipped examples."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "admin-token").write_text("0123456789abcdef\n")
    shutil.copy(TOML_PATH, credentials / "mmserver.toml")
    environment = {}
    for value in values(unit["Service"], "Environment"):
        key, _, raw = value.partition("=")
        environment[key] = raw.replace("%d", str(credentials)).replace("%S", str(tmp_path / "state"))
    environment.update(env_file)
    try:
        config = load([], environment)
    except ConfigError as error:
        pytest.fail(f"the shipped unit and examples do not make a valid configuration: {error}")
    assert config.admin_token == "0123456789abcdef"
    assert config.drain_delay_s == float(env_file[env_name("drain_delay_s")])
    assert config.data_dir == tmp_path / "state" / single(unit["Service"], "StateDirectory")
    assert config.servers.token and "REPLACE" in config.servers.token, "placeholder must be obvious"
    assert set(config.modes) >= {"duel"}
