"""Values the converters accept only within what the places using them can hold: every number
a float can carry, every duration and count within the bounds Redis and Lua keep exact."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmserver.config import ConfigError, load

HUGE = "1" + "0" * 400  # an integer TOML reads, beyond a float's range


def refusal(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mm.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load([], {"MMSERVER_CONFIG": str(path)})
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("text, setting", [
    (f"[modes.duel]\nmmr_window = {HUGE}\n", "modes.duel.mmr_window"),
    (f"[modes.duel]\nticket_ttl_s = {HUGE}\n", "modes.duel.ticket_ttl_s"),
    ("[modes.duel]\n[[modes.duel.rules]]\nname = 'lvl'\nkind = 'distance'\nattribute = 'mmr'\n"
     f"max = {HUGE}\n", "max"),
    (f"[regions]\nnames = ['eu']\n[modes.duel]\nlatency = {{max_ms = {HUGE}}}\n", "modes.duel.latency.max_ms"),
    (f"[modes.duel]\n[servers]\nheartbeat_ttl_s = {HUGE}\n", "servers.heartbeat_ttl_s"),
    (f"[modes.duel]\n[limits]\npoll_per_s = {HUGE}\n", "limits.poll_per_s"),
])
def test_an_integer_too_large_for_a_float_is_refused_naming_the_setting(tmp_path, text, setting):
    message = refusal(tmp_path, text)
    assert setting in message and "expected a number, got an integer of 401 digits" in message, message


WEBHOOKS = "[webhooks]\nurl = 'http://127.0.0.1:9/hook'\nsecret_file = '{secret}'\n"


def with_webhooks(tmp_path: Path, extra: str) -> str:
    secret = tmp_path / "webhook.secret"
    secret.write_text("whsec-7Fq2LmZp9XcVb3Nd\n")
    return "[modes.duel]\n" + WEBHOOKS.format(secret=secret) + extra


TEN_YEARS = "must be at most 315,360,000 s (10 years)"


@pytest.mark.parametrize("table, key", [
    ("[modes.duel]", "ticket_ttl_s"), ("[modes.duel]", "accept_timeout_s"), ("[modes.duel]", "max_match_s"),
    ("[servers]", "heartbeat_ttl_s"), ("[servers]", "allocation_timeout_s"), ("[servers]", "retention_s"),
    ("[events]", "max_age_s"),
])
def test_a_duration_over_ten_years_is_refused(tmp_path, table, key):
    head = "" if table == "[modes.duel]" else "[modes.duel]\n"
    for value in ("1e16", "1e300", "315360001"):
        message = refusal(tmp_path, f"{head}{table}\n{key} = {value}\n")
        assert f"{table.strip('[]')}.{key}: {TEN_YEARS}" in message, message


@pytest.mark.parametrize("key", ["timeout_s", "backoff_initial_s", "backoff_max_s"])
def test_a_webhook_duration_over_ten_years_is_refused(tmp_path, key):
    message = refusal(tmp_path, with_webhooks(tmp_path, f"{key} = 1e300\n"))
    assert f"webhooks.{key}: {TEN_YEARS}, got 1e+300" in message, message


def test_fill_wait_and_expansion_steps_are_durations_too(tmp_path):
    variable = "[modes.duel]\nmax_team_size = 4\nmin_team_size = 2\n"
    assert f"fill_wait_s: {TEN_YEARS}" in refusal(tmp_path, variable + "fill_wait_s = 1e12\n")
    rule = ("[modes.duel]\n[[modes.duel.rules]]\nname = 'skill'\nkind = 'distance'\nattribute = 'mmr'\n"
            "max = 100\nexpand = [{after_s = 1e12, max = 200}]\n")
    assert f"after_s: {TEN_YEARS}" in refusal(tmp_path, rule)


def test_ten_years_itself_is_accepted(tmp_path):
    path = tmp_path / "mm.toml"
    path.write_text("[modes.duel]\nticket_ttl_s = 315360000\nmax_match_s = 315360000.0\n"
                    "[servers]\nretention_s = 315360000\n[events]\nmax_age_s = 315360000\n")
    config = load([], {"MMSERVER_CONFIG": str(path)})
    assert config.modes["duel"].ticket_ttl_s == config.events.max_age_s == 315_360_000


@pytest.mark.parametrize("text, setting", [
    ("[modes.duel]\n[events]\nmax_len = 100000000000000000\n", "events.max_len"),
    ("[modes.duel]\nteam_size = 1000000001\n", "modes.duel.team_size"),
    ("[modes.duel]\n[limits]\npoll_burst = 10000000000\n", "limits.poll_burst"),
    (f"[modes.duel]\n[events]\nmax_len = {HUGE}\n", "events.max_len"),
])
def test_a_count_over_a_billion_is_refused(tmp_path, text, setting):
    message = refusal(tmp_path, text)
    assert f"{setting}: must be at most 1,000,000,000, got " in message, message
    assert len(message) < 200  # a 400-digit integer is described, not printed


def test_a_billion_events_is_accepted(tmp_path):
    path = tmp_path / "mm.toml"
    path.write_text("[modes.duel]\n[events]\nmax_len = 1000000000\n")
    assert load([], {"MMSERVER_CONFIG": str(path)}).events.max_len == 1_000_000_000


def test_webhook_counts_are_bounded(tmp_path):
    for key in ("max_attempts", "max_dead_letters"):
        message = refusal(tmp_path, with_webhooks(tmp_path, f"{key} = 10000000000\n"))
        assert f"webhooks.{key}: must be at most 1,000,000,000" in message, message


@pytest.mark.parametrize("name, value, expected", [
    ("MMSERVER_DRAIN_DELAY_S", "1e10", TEN_YEARS),
    ("MMSERVER_SHUTDOWN_TIMEOUT_S", "1e300", TEN_YEARS),
    ("MMSERVER_VIEW_CACHE_MAX_AGE_S", "315360001", TEN_YEARS),
    ("MMSERVER_TICK_INTERVAL_MS", "1000000000000000", "must be at most 315,360,000,000 ms (10 years)"),
    ("MMSERVER_REDIS_BACKOFF_INITIAL_MS", "315360000001", "must be at most 315,360,000,000 ms (10 years)"),
    ("MMSERVER_REDIS_BACKOFF_MAX_MS", HUGE, "must be at most 315,360,000,000 ms (10 years), got an integer of 401"),
    ("MMSERVER_REDIS_RECONNECT_ATTEMPTS", "10000000000", "must be at most 1,000,000,000"),
    ("MMSERVER_HTTP_THREADS", "10000000000", "must be at most 1,000,000,000"),
    ("MMSERVER_MAX_BODY_BYTES", "10000000000", "must be at most 1,000,000,000"),
])
def test_environment_durations_and_counts_are_bounded(name, value, expected):
    with pytest.raises(ConfigError) as caught:
        load([], {name: value})
    assert str(caught.value).startswith(f"{name}: {expected}"), caught.value


def test_environment_bounds_themselves_are_accepted():
    config = load([], {"MMSERVER_DRAIN_DELAY_S": "315360000", "MMSERVER_TICK_INTERVAL_MS": "315360000000"})
    assert (config.drain_delay_s, config.tick_interval_ms) == (315_360_000, 315_360_000_000)
