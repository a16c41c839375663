"""[auth], [regions], [limits], servers and mode additions of the configuration file: accepted
forms and every refusal (one line, naming the setting)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mmserver.config import ConfigError, load

MODE = "[modes.duel]\n"
SECRET = "jwt-secret-0123456789abcdef0123456789"


def load_text(tmp_path: Path, text: str, env: dict | None = None):
    path = tmp_path / "mm.toml"
    path.write_text(text)
    return load([], {"MMSERVER_CONFIG": str(path), **(env or {})})


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_auth_from_files_with_rotation_and_comments(tmp_path):
    keys = write(tmp_path, "backend.keys", "# rotated weekly\nkey-new-0123456789abcdef\n\nkey-old-0123456789abcdef\n")
    secret = write(tmp_path, "jwt.secret", SECRET + "\n")
    config = load_text(tmp_path, MODE + f"""
[auth]
backend_keys_file = "{keys}"
player_jwt_secret_file = "{secret}"
player_jwt_issuer = "https://auth.example.com"
player_jwt_audience = "mmserver"
trusted_claims = ["mmr"]
""", {"MMSERVER_LISTEN": "0.0.0.0:8080"})
    auth = config.auth
    assert auth.backend_keys == ("key-new-0123456789abcdef", "key-old-0123456789abcdef")
    assert (auth.player_jwt_key, auth.player_jwt_algorithm) == (SECRET, "HS256")
    assert auth.trusted_claims == ("mmr",) and not config.open_creation
    assert config.servers.token is None  # no demo token beyond loopback


@pytest.mark.parametrize("kind, algorithm", [("rsa", "RS256"), ("ec", "ES256")])
def test_the_public_key_decides_the_algorithm(tmp_path, kind, algorithm):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" \
        else ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / "jwt.pem"
    path.write_bytes(pem)
    config = load_text(tmp_path, MODE + f'[auth]\nplayer_jwt_public_key_file = "{path}"\n')
    assert config.auth.player_jwt_algorithm == algorithm


def test_regions_limits_servers_and_max_match(tmp_path):
    token = write(tmp_path, "server.token", "gs-token-0123456789abcdef")
    config = load_text(tmp_path, """
[regions]
names = ["eu-west", "us-east"]
[modes.duel]
max_match_s = 1800
[servers]
token_file = "%s"
static = ["10.0.0.5:7777", {address = "10.0.0.6:7777", region = "eu-west"}]
retention_s = 600
[limits]
poll_per_s = 5
poll_burst = 10
create_per_min = 3
address_per_s = 50
""" % token)
    assert config.regions == ("eu-west", "us-east")
    assert config.modes["duel"].max_match_s == 1800
    assert config.servers.token == "gs-token-0123456789abcdef"
    assert config.servers.static == ("10.0.0.5:7777", "10.0.0.6:7777")
    assert config.servers.static_regions == {"10.0.0.6:7777": "eu-west"}
    assert config.servers.retention_s == 600
    assert (config.limits.poll_per_s, config.limits.poll_burst, config.limits.create_per_min) == (5, 10, 3)
    assert config.limits.address_per_s == 50 and config.limits.backend_per_s is None


@pytest.mark.parametrize("text, fragment", [
    ("[servers]\ntoken = 'abcdefghijklmnopqrstuvwxyz'\n", "configures no mode"),
    (MODE + "[auth]\nbackend_keys = ['change-me-please-now-0000']\n", "placeholder"),
    (MODE + "[servers]\ntoken = 'REPLACE_ME_with_a_real_token'\n", "placeholder"),
    (MODE + "[servers]\ntoken = 'short'\n", "at least 16"),
    (MODE + "[auth]\nbackend_keys = ['too-short']\n", "at least 16"),
    (MODE + "[auth]\n", "names no credential"),
    (MODE + "[auth]\nbackend_keys = ['k-0123456789abcdef']\ntrusted_claims = ['mmr']\n", "needs player JWTs"),
    (MODE + "[auth]\nbackend_keys = ['k-0123456789abcdef']\ntrusted_claims = ['level']\n", "cannot be trusted"),
    (MODE + "[auth]\nbackend_keys = ['k-0123456789abcdef']\nplayer_jwt_issuer = 'https://id.example'\n",
     "auth.player_jwt_issuer: needs player JWTs"),
    (MODE + "[auth]\nbackend_keys = ['k-0123456789abcdef']\nplayer_jwt_audience = 'mmserver'\n",
     "auth.player_jwt_audience: needs player JWTs"),
    (MODE + "[auth]\nbackend_keys_file = '/nonexistent/keys'\n", "cannot read"),
    (MODE + "[auth]\nopen = 'yes'\n", "true or false"),
    (MODE + "[auth]\nbackend_keys = ['k-0123456789abcdef']\nbackend_keys_file = 'x'\n", "not both"),
    (MODE + "[auth]\ncolour = 'red'\n", "unknown option 'colour'"),
    (MODE + "[regions]\nnames = []\n", "list of 1 to"),
    (MODE + "[regions]\nnames = ['eu', 'eu']\n", "twice"),
    (MODE + "[regions]\nnames = ['bad region']\n", "region name"),
    (MODE + "[servers]\nstatic = [{address = '10.0.0.6:1', region = 'eu'}]\n", "not in [regions]"),
    (MODE + "[servers]\nstatic = ['10.0.0.6:1', {address = '10.0.0.6:1'}]\n", "twice"),
    (MODE + "[servers]\nheartbeat_ttl_s = 60\nretention_s = 30\n", "below heartbeat_ttl_s"),
    (MODE + "[limits]\npoll_burst = 0\n", "at least 1"),
    ("[modes.duel]\nmax_match_s = 0\n", "greater than 0"),
])
def test_refusals(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_a_public_listener_beyond_loopback_needs_auth(tmp_path):
    with pytest.raises(ConfigError, match="not a loopback address and no \\[auth\\] table"):
        load([], {"MMSERVER_LISTEN": "0.0.0.0:8080"})
    with pytest.raises(ConfigError, match="open = true"):
        load_text(tmp_path, MODE + "[auth]\nopen = true\n", {"MMSERVER_LISTEN": "10.1.2.3:8080"})
    assert load_text(tmp_path, MODE + "[auth]\nopen = true\n").open_creation  # loopback demo


def test_a_secret_never_appears_in_a_refusal(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, MODE + "[auth]\nbackend_keys = ['changeme-SECRETVALUE-123']\n")
    assert "SECRETVALUE" not in str(caught.value)


def test_the_command_refuses_open_creation_beyond_loopback_with_exit_2(tmp_path):
    env = {"MMSERVER_LISTEN": "0.0.0.0:18080", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "mmserver"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MMSERVER_LISTEN" in lines[0] and "[auth]" in lines[0], result.stderr


def test_the_demo_server_token_is_for_open_loopback_demos_only(tmp_path):
    from mmserver.config import DEMO_SERVER_TOKEN
    assert load([], {}).servers.token == DEMO_SERVER_TOKEN
    config = load_text(tmp_path, MODE + "[auth]\nbackend_keys = ['k-0123456789abcdef']\n")
    assert config.servers.token is None  # loopback, but behind real credentials


PRESENTABLE = "a bearer token must be printable ASCII without spaces"


@pytest.mark.parametrize("text, setting", [
    (MODE + "[auth]\nbackend_keys = ['key-0123456789 abcdef']\n", "auth.backend_keys"),
    (MODE + "[auth]\nbackend_keys = [\"key-0123456789\\tabcdef\"]\n", "auth.backend_keys"),
    (MODE + "[auth]\nbackend_keys = ['key-0123456789-caf\u00e9']\n", "auth.backend_keys"),
    (MODE + "[servers]\ntoken = 'server token 0123456789'\n", "servers.token"),
    (MODE + "[servers]\ntoken = 'server-token-\u20ac-0123456789'\n", "servers.token"),
])
def test_a_bearer_secret_no_client_could_present_is_refused(tmp_path, text, setting):
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    message = str(caught.value)
    assert f"{setting}: {PRESENTABLE}" in message and "0123456789" not in message, message


def test_bearer_secrets_from_files_are_held_to_the_same_rule(tmp_path):
    keys = write(tmp_path, "backend.keys", "key-new-0123456789abcdef\nkey old 0123456789abcdef\n")
    with pytest.raises(ConfigError, match=f"auth.backend_keys: {PRESENTABLE}"):
        load_text(tmp_path, MODE + f"[auth]\nbackend_keys_file = '{keys}'\n")
    token = write(tmp_path, "server.token", "server-token-\u00e9\u00e9-0123456789\n")
    with pytest.raises(ConfigError, match=f"servers.token: {PRESENTABLE}"):
        load_text(tmp_path, MODE + f"[servers]\ntoken_file = '{token}'\n")


def test_an_admin_token_no_client_could_present_is_refused():
    with pytest.raises(ConfigError, match=f"^MMSERVER_ADMIN_TOKEN: {PRESENTABLE}"):
        load([], {"MMSERVER_ADMIN_TOKEN": "admin token"})
    with pytest.raises(ConfigError, match=f"^MMSERVER_ADMIN_TOKEN: {PRESENTABLE}"):
        load([], {"MMSERVER_ADMIN_TOKEN": "jet\u00e9"})


def test_an_admin_token_file_of_two_lines_is_refused(tmp_path):
    path = write(tmp_path, "admin.token", "first-line-token\nsecond-line-token\n")
    with pytest.raises(ConfigError, match=f"^MMSERVER_ADMIN_TOKEN_FILE: {PRESENTABLE}"):
        load([], {"MMSERVER_ADMIN_TOKEN_FILE": str(path)})


def test_exactly_the_secrets_a_presented_token_can_match_are_accepted(tmp_path):
    """For every character up to U+00FF (and one beyond), a backend key holding it is accepted
    exactly when a client could present it: bearer_token keeps it from a header as the server
    decodes it (latin-1, PEP 3333) from the UTF-8 a client sends, the digests compare equal, and
    it is no control character (which HTTP servers refuse in a header)."""
    from mmserver.credentials import SecretSet, bearer_token

    for code in [*range(0x100), 0x20AC]:
        key = f"key-0123456789abcdef{chr(code)}x"
        header = ("Bearer " + key).encode("utf-8").decode("latin-1")
        control = code < 0x20 or 0x7F <= code < 0xA0
        presentable = not control and SecretSet([key]).matches(bearer_token(header))
        try:
            # A TOML basic string: JSON's escapes are TOML's, bar DEL, which TOML wants escaped.
            toml_key = json.dumps(key).replace("\x7f", "\\u007F")
            load_text(tmp_path, MODE + f"[auth]\nbackend_keys = [{toml_key}]\n")
            accepted = True
        except ConfigError as error:
            assert PRESENTABLE in str(error)
            accepted = False
        assert accepted == presentable, (hex(code), accepted)
