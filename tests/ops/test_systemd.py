"""Offline checks of systemd/: the unit verifies, its sandbox scores, its numbers agree with the
environment example and with mmserver's own configuration, and every secret the configuration
file needs comes from a file the unit loads as a credential."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mmserver.config import SETTINGS, ConfigError, env_name, load
from tests.ops.files import (
    REPO, commented_env_names, inline_secrets, parse_env_file, parse_unit, secret_files, single,
    timespan_seconds, values,
)

UNIT_PATH = REPO / "systemd" / "mmserver.service"
ENV_PATH = REPO / "systemd" / "mmserver.env"
TOML_PATH = REPO / "systemd" / "mmserver.toml"
INSTALLED_EXEC = "/opt/mmserver/.venv/bin/mmserver"
MAX_EXPOSURE = 2.0
# Where systemd puts a system service's credentials ($CREDENTIALS_DIRECTORY, %d): a file that
# cannot expand %d names them by this path (systemd.exec(5), "Credentials").
CREDENTIALS_DIR = f"/run/credentials/{UNIT_PATH.name}"
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


def _credentials(unit) -> dict[str, str]:
    """LoadCredential= of the unit: {credential name: source path on the host}."""
    return dict(value.split(":", 1) for value in values(unit["Service"], "LoadCredential"))


@pytest.fixture(scope="module")
def toml_document() -> dict:
    return tomllib.loads(TOML_PATH.read_text(encoding="utf-8"))


def test_secrets_come_as_credentials(unit, env_file) -> None:
    service = unit["Service"]
    credentials = _credentials(unit)
    environment = dict(value.split("=", 1) for value in values(service, "Environment"))
    assert environment[env_name("admin_token_file")] == "%d/admin-token"
    assert environment[env_name("config")] == "%d/mmserver.toml"
    for path in (environment[env_name("admin_token_file")], environment[env_name("config")]):
        assert path.removeprefix("%d/") in credentials
    for source in credentials.values():
        assert source.startswith("/etc/mmserver/"), source
    # No secret value in the unit itself (SetCredential= would be one, readable by any user).
    assert values(service, "SetCredential") == [] and values(service, "SetCredentialEncrypted") == []
    # EnvironmentFile= overrides Environment=: the example must not shadow what the unit sets.
    assert not set(environment) & set(env_file)
    assert env_name("admin_token") not in env_file


def test_config_file_has_auth_and_no_inline_secret(toml_document) -> None:
    auth = toml_document.get("auth")
    assert isinstance(auth, dict), "a public listener beyond loopback needs [auth]"
    assert auth.get("open", False) is False
    assert inline_secrets(toml_document) == [], "secrets belong in credential files"
    # Every kind of caller of the public API has its secret from a file.
    assert {"auth.backend_keys_file", "auth.player_jwt_secret_file", "servers.token_file"} <= set(
        secret_files(toml_document))


def test_every_file_the_config_names_is_a_credential_of_the_unit(unit, toml_document) -> None:
    credentials = _credentials(unit)
    for key, path in secret_files(toml_document).items():
        directory, _, name = path.rpartition("/")
        assert directory == CREDENTIALS_DIR, f"{key} = {path}: not in the unit's credentials directory"
        assert name in credentials, f"{key} = {path}: no LoadCredential={name}:... in the unit"


def test_the_inline_secret_check_catches_one() -> None:
    # Guards the two checks above: a token written into the file is found, a file path is not.
    document = tomllib.loads('[servers]\ntoken = "0123456789abcdef0123"\n[auth]\nbackend_keys = ["k"]\n')
    assert inline_secrets(document) == ["servers.token", "auth.backend_keys"]
    assert secret_files(document) == {}


def _as_started_by_the_unit(unit, env_file, tmp_path: Path, credential_values: dict[str, str]) -> dict:
    """The environment mmserver gets from this unit, with the credentials directory (%d and the
    TOML's fixed /run/credentials/mmserver.service) moved to tmp_path/credentials."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for name in _credentials(unit):
        if name == "mmserver.toml":
            text = TOML_PATH.read_text(encoding="utf-8").replace(f"{CREDENTIALS_DIR}/", f"{credentials}/")
        else:
            text = credential_values[name]
        (credentials / name).write_text(text, encoding="utf-8")
    environment = {}
    for value in values(unit["Service"], "Environment"):
        key, _, raw = value.partition("=")
        environment[key] = raw.replace("%d", str(credentials)).replace("%S", str(tmp_path / "state"))
    environment.update(env_file)
    return environment


def _random_credentials() -> dict[str, str]:
    return {
        "admin-token": secrets.token_hex(32) + "\n",
        "backend.keys": f"# game backend, rotated 2026-11\n{secrets.token_hex(32)}\n{secrets.token_hex(32)}\n",
        "jwt.secret": secrets.token_hex(32) + "\n",
        "server.token": secrets.token_hex(32) + "\n",
    }


def test_unit_and_examples_build_a_valid_config(unit, env_file, tmp_path: Path) -> None:
    """What mmserver would see when started by this unit with the shipped examples and
    credential files of random values."""
    given = _random_credentials()
    environment = _as_started_by_the_unit(unit, env_file, tmp_path, given)
    try:
        config = load([], environment)
    except ConfigError as error:
        pytest.fail(f"the shipped unit and examples do not make a valid configuration: {error}")
    assert not config.listen.is_loopback, "the example serves beyond loopback: [auth] is what allows it"
    assert config.auth is not None and not config.open_creation
    assert config.admin_token == given["admin-token"].strip()
    assert list(config.auth.backend_keys) == given["backend.keys"].split("\n")[1:3]
    assert (config.auth.player_jwt_key, config.auth.player_jwt_algorithm) == (given["jwt.secret"].strip(), "HS256")
    assert config.servers.token == given["server.token"].strip()
    assert config.drain_delay_s == float(env_file[env_name("drain_delay_s")])
    assert config.data_dir == tmp_path / "state" / single(unit["Service"], "StateDirectory")
    assert set(config.modes) >= {"duel"}


@pytest.mark.parametrize("name", ["backend.keys", "jwt.secret", "server.token", "admin-token"])
def test_a_placeholder_left_in_a_credential_is_refused(unit, env_file, tmp_path: Path, name: str) -> None:
    """The operator's mistake these files invite: an example value copied into a secret."""
    given = {**_random_credentials(), name: "change-me-change-me-change-me-change-me\n"}
    with pytest.raises(ConfigError, match="placeholder"):
        load([], _as_started_by_the_unit(unit, env_file, tmp_path, given))


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
