import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmserver.config import DEMO_SERVER_TOKEN, Address, Config, ConfigError, ServersConfig, load


def write(tmp_path: Path, text: str, name: str = "mm.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_match_the_spec():
    config = load([], {})
    # A loopback public listener with no server token gets the demo one (README "Try it").
    assert config == Config(servers=ServersConfig(token=DEMO_SERVER_TOKEN))
    assert config.redis_url is None and config.embedded_redis
    assert config.listen == Address("127.0.0.1", 8080)
    assert config.admin_listen == Address("127.0.0.1", 8081)
    assert config.tick_interval_ms == 500
    assert (config.redis_reconnect_attempts, config.redis_backoff_initial_ms, config.redis_backoff_max_ms) == (10, 1000, 60000)
    assert config.drain_delay_s == 0 and config.shutdown_timeout_s == 20
    assert config.log_format == "text" and config.log_level == "INFO"
    duel = config.modes["duel"]
    assert (duel.team_size, duel.teams, duel.accept_timeout_s, duel.mmr_window) == (1, 2, 60, 100)
    assert (duel.mmr_window_growth_per_s, duel.mmr_window_max, duel.ticket_ttl_s) == (20, 1000, 300)
    assert config.servers.token == DEMO_SERVER_TOKEN and config.servers.static == ()
    assert config.auth is None and config.open_creation and config.regions == ()


def test_environment_is_read_and_flags_win():
    env = {"MMSERVER_LISTEN": "127.0.0.2:9000", "MMSERVER_TICK_INTERVAL_MS": "250",
           "MMSERVER_ADMIN_TOKEN": "s3cret", "MMSERVER_LOG_FORMAT": "JSON"}
    config = load(["--tick-interval-ms", "100"], env)
    assert config.listen == Address("127.0.0.2", 9000)
    assert config.tick_interval_ms == 100
    assert config.log_format == "json"
    assert config.admin_token == "s3cret"


def test_empty_variable_counts_as_unset():
    assert load([], {"MMSERVER_REDIS_URL": ""}).redis_url is None


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://h:6380", "unix:///tmp/r.sock",
                                 "redis+sentinel://s1:26379,s2:26379/mymaster",
                                 "redis://h:6379/", "redis://h:6379/15", "rediss://:pw@h:6380/2",
                                 "redis://h/0?socket_timeout=3", "unix:///tmp/r.sock?db=3",
                                 "unix:///var/run/redis/3x.sock?db=0"])
def test_redis_urls_accepted(url):
    assert load([], {"MMSERVER_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"MMSERVER_REDIS_URL": "http://x"}, "unsupported scheme"),
        ({"MMSERVER_REDIS_URL": "redis://"}, "no host"),
        ({"MMSERVER_REDIS_URL": "redis://h:99999"}, "bad port"),
        ({"MMSERVER_REDIS_URL": "redis://[::1:6379"}, "bad URL 'redis://[::1:6379': Invalid IPv6 URL"),
        ({"MMSERVER_REDIS_URL": "rediss://[abc/0"}, "Invalid IPv6 URL"),
        ({"MMSERVER_REDIS_URL": "rediss://:pw@[abc]/0"}, "bad URL 'rediss://***@[abc]/0': 'abc' does not appear"),
        ({"MMSERVER_REDIS_URL": "redis+sentinel://[::1/m"}, "Invalid IPv6 URL"),
        ({"MMSERVER_REDIS_URL": "redis://127.0.0.1:6379/3x"}, "must be a number (redis://host:port/N), got '3x'"),
        ({"MMSERVER_REDIS_URL": "redis://h/abc"}, "got 'abc'"),
        ({"MMSERVER_REDIS_URL": "rediss://:pw@h:6380/1x"}, "the database in 'rediss://***@h:6380/1x'"),
        ({"MMSERVER_REDIS_URL": "redis://h/1/2"}, "got '1/2'"),
        ({"MMSERVER_REDIS_URL": "redis://h/-1"}, "got '-1'"),
        ({"MMSERVER_LISTEN": "8080"}, "HOST:PORT"),
        ({"MMSERVER_LISTEN": "h:x"}, "port must be a number"),
        ({"MMSERVER_LISTEN": "127.0.0.1:+80"}, "port must be a number"),
        ({"MMSERVER_LISTEN": "127.0.0.1: 80"}, "port must be a number"),
        ({"MMSERVER_LISTEN": "127.0.0.1:8_0"}, "port must be a number"),
        ({"MMSERVER_ADMIN_LISTEN": "127.0.0.1:\u0668\u0660"}, "port must be a number"),
        ({"MMSERVER_REDIS_URL": "redis+sentinel://s1:+26379/m"}, "port must be a number"),
        ({"MMSERVER_TICK_INTERVAL_MS": "fast"}, "integer"),
        ({"MMSERVER_TICK_INTERVAL_MS": "0"}, "at least"),
        ({"MMSERVER_SHUTDOWN_TIMEOUT_S": "0"}, "greater than 0"),
        ({"MMSERVER_DRAIN_DELAY_S": "-1"}, ">= 0"),
        ({"MMSERVER_DRAIN_DELAY_S": "nan"}, ">= 0"),
        ({"MMSERVER_LOG_FORMAT": "xml"}, "one of"),
        ({"MMSERVER_ADMIN_LISTEN": "0.0.0.0:8081"}, "not a loopback"),
        ({"MMSERVER_REDIS_BACKOFF_INITIAL_MS": "5000", "MMSERVER_REDIS_BACKOFF_MAX_MS": "100"}, "below"),
        ({"MMSERVER_ADMIN_TOKEN_FILE": "/nonexistent/token"}, "cannot read"),
        ({"MMSERVER_CONFIG": "/nonexistent/mm.toml"}, "cannot read"),
        ({"MMSERVER_MAX_LONGPOLLS": "-1"}, "at least 0"),
        ({"MMSERVER_DATA_DIR": "   "}, "must not be empty"),
        ({"MMSERVER_SENTRY_DSN": "not-a-dsn"}, "not a Sentry DSN (Unsupported scheme ''); expected https://"),
        ({"MMSERVER_SENTRY_DSN": "https://h/1"}, "not a Sentry DSN (Missing public key)"),
        ({"MMSERVER_SENTRY_DSN": "https://key@[::1/1"}, "not a Sentry DSN (Invalid IPv6 URL)"),
    ],
)
def test_invalid_settings_are_refused_with_the_variable_named(env, fragment):
    with pytest.raises(ConfigError) as caught:
        load([], env)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message
    assert any(name in message for name in env)


def test_admin_listener_off_loopback_is_fine_with_a_token_file(tmp_path):
    token = write(tmp_path, "  tok-123\n", "token")
    config = load([], {"MMSERVER_ADMIN_LISTEN": "0.0.0.0:8081", "MMSERVER_ADMIN_TOKEN_FILE": str(token)})
    assert config.admin_token == "tok-123"


def test_config_file_modes_and_servers(tmp_path):
    path = write(tmp_path, """
[modes.duel]
team_size = 1
teams = 2
accept_timeout_s = 0

[modes.squad]
team_size = 5
teams = 2
mmr_window = 50
mmr_window_growth_per_s = 5.5
mmr_window_max = 400
ticket_ttl_s = 60

[servers]
token = "gs-token-7Fq2LmZp9XcV"
static = ["10.0.0.5:7777", "10.0.0.6:7777"]
heartbeat_ttl_s = 15
allocation_timeout_s = 30
""")
    config = load(["--config", str(path)], {})
    assert set(config.modes) == {"duel", "squad"}
    assert config.modes["duel"].accept_timeout_s == 0
    squad = config.modes["squad"]
    assert (squad.team_size, squad.mmr_window_growth_per_s, squad.players_per_match) == (5, 5.5, 10)
    assert config.servers.token == "gs-token-7Fq2LmZp9XcV"
    assert config.servers.static == ("10.0.0.5:7777", "10.0.0.6:7777")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[modes.duel]\nteams = 0\n", "at least 1"),
        ("[modes.duel]\nteam_size = 0\n", "at least 1"),
        ("[modes.duel]\naccept_timeout_s = -1\n", ">= 0"),
        ("[modes.duel]\nmmr_window = 200\nmmr_window_max = 100\n", "below mmr_window"),
        ("[modes.duel]\ncolour = 'red'\n", "unknown option 'colour'"),
        ("[modes.duel]\nteams = '2'\n", "integer"),
        ("[modes.duel]\nteams = true\n", "integer"),
        ("[modes]\n", "at least one"),
        ("[modes.'bad name']\n", "mode name"),
        ("[matchmaking]\n", "unknown section"),
        ("[modes.duel]\n[servers]\nstatic = ['nohost']\n", "host:port"),
        ("[modes.duel]\n[servers]\nstatic = ['a:1', 'a:1']\n", "twice"),
        ("[modes.duel]\n[servers]\nstatic = ['A.:1', 'a:01']\n", "twice"),  # one address, two spellings
        ("[modes.duel]\n[servers]\nstatic = ['10.0.0.05:1']\n", "not an IPv4 address"),
        ("[modes.duel]\n[servers]\nstatic = ['a:0']\n", "between 1 and 65535"),
        ("[modes.duel]\n[servers]\nheartbeat_ttl_s = 0\n", "greater than 0"),
        ("[modes.duel]\n[servers]\ntoken = ''\n", "must not be empty"),
        ("not toml at all [", "not valid TOML"),
    ],
)
def test_bad_config_files_are_refused(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load([], {"MMSERVER_CONFIG": str(path)})
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_static_servers_are_kept_in_the_spelling_servers_register_in(tmp_path):
    path = write(tmp_path, "[modes.duel]\n[servers]\nstatic = ['GS.example.:07777', '[0::1]:7777']\n")
    config = load([], {"MMSERVER_CONFIG": str(path)})
    assert config.servers.static == ("gs.example:7777", "[::1]:7777")


def test_the_command_exits_2_with_one_line_and_no_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSERVER_")}
    env["MMSERVER_REDIS_URL"] = "http://nope"
    result = subprocess.run([sys.executable, "-m", "mmserver"], env=env, capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mmserver: error: MMSERVER_REDIS_URL:")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv, says", [
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--listen"], "argument --listen: expected one argument"),
    (["positional"], "unrecognized arguments: positional"),
])
def test_a_usage_error_is_one_line_and_exit_2(tmp_path, argv, says):
    result = subprocess.run([sys.executable, "-m", "mmserver", *argv], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"mmserver: error: {says} (mmserver --help lists the flags)"]
    assert result.stdout == ""


def test_help_still_lists_every_flag_and_exits_0(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mmserver", "--help"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: mmserver")
    assert "--redis-url VALUE" in result.stdout and "(env MMSERVER_VIEW_CACHE_MAX_AGE_S)" in result.stdout


def test_the_view_cache_is_on_by_default_and_a_setting_turns_it_off():
    assert load([], {}).view_cache > 0
    assert load([], {"MMSERVER_VIEW_CACHE": "0"}).view_cache == 0
    assert load(["--view-cache-max-age-s", "5"], {}).view_cache_max_age_s == 5.0
    with pytest.raises(ConfigError, match="MMSERVER_VIEW_CACHE"):
        load([], {"MMSERVER_VIEW_CACHE": "-1"})


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"[modes.duel]\nteams = 2 # caf\xe9\n", "is not UTF-8 text: invalid continuation byte at byte"),
        (b"[modes.duel]\nteams = 1" + b"0" * 5000 + b"\n", "is not valid TOML: Exceeds the limit"),
        (b"[modes.duel]\nx = " + b"[" * 50000 + b"]" * 50000 + b"\n", "nested too deeply"),
    ],
)
def test_config_files_tomllib_cannot_read_are_refused_in_one_line(tmp_path, content, fragment):
    path = tmp_path / "mm.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load([], {"MMSERVER_CONFIG": str(path)})
    message = str(caught.value)
    assert message.startswith(f"MMSERVER_CONFIG: {path} ") and fragment in message, message
    assert "\n" not in message and "set_int_max_str_digits" not in message


def test_a_sentry_dsn_is_checked_by_the_sdk_that_will_use_it():
    # The check leans on sentry_sdk.utils.Dsn: if the SDK stopped refusing such input, this
    # fails rather than the configuration silently accepting DSNs the SDK cannot use.
    from sentry_sdk.utils import BadDsn, Dsn

    with pytest.raises(BadDsn):
        Dsn("not-a-dsn")
    dsn = "https://0123abcd@o1.ingest.sentry.io/42"
    assert load([], {"MMSERVER_SENTRY_DSN": f" {dsn} "}).sentry_dsn == dsn
