"""[webhooks] in the configuration file, the signature, and the retry schedule (pure parts)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mmserver.config import ConfigError, WebhooksConfig, load
from mmserver.webhooks import signing
from mmserver.webhooks.retry import IN_FLIGHT_MARGIN_S, RetryPolicy

SECRET = "whsec-unit-8d3f1c0b7a6e5942"
MODE = "[modes.duel]\nteam_size = 1\n"


def write(tmp_path, body: str, secret: str | None = SECRET):
    secret_file = tmp_path / "secret"
    if secret is not None:
        secret_file.write_text(secret + "\n")
    path = tmp_path / "mm.toml"
    path.write_text(MODE + "[webhooks]\n" + body.replace("SECRET_FILE", str(secret_file)))
    return path


def parse(tmp_path, body: str, secret: str | None = SECRET):
    return load([], {"MMSERVER_CONFIG": str(write(tmp_path, body, secret))})


def test_defaults_and_values(tmp_path):
    webhooks = parse(tmp_path, 'url = "https://hooks.example.com/mm?x=1"\nsecret_file = "SECRET_FILE"\n').webhooks
    assert webhooks == WebhooksConfig(url="https://hooks.example.com/mm?x=1", secret=SECRET)
    assert (webhooks.max_attempts, webhooks.timeout_s, webhooks.backoff_initial_s, webhooks.backoff_max_s) == (10, 5, 1, 300)
    assert webhooks.events is None and webhooks.wants("match.finished") and webhooks.wants("backfill.filled")
    assert SECRET not in repr(webhooks)  # never in a log line that prints the config
    assert load([], {}).webhooks is None


def test_event_selection_by_type_and_prefix(tmp_path):
    webhooks = parse(tmp_path, 'url = "http://127.0.0.1:9000/"\nsecret_file = "SECRET_FILE"\n'
                               'events = ["ticket.*", "match.assigned", "backfill.filled"]\n').webhooks
    assert webhooks.wants("ticket.queued") and webhooks.wants("ticket.expired")
    assert webhooks.wants("match.assigned") and not webhooks.wants("match.finished")
    assert webhooks.wants("backfill.filled") and not webhooks.wants("backfill.created")


@pytest.mark.parametrize("body, message", [
    ('secret_file = "SECRET_FILE"\n', "webhooks: missing key 'url'"),
    ('url = "http://h/x"\n', "webhooks: missing key 'secret_file'"),
    ('url = "ftp://h/x"\nsecret_file = "SECRET_FILE"\n', "webhooks.url: expected an http:// or https:// URL"),
    ('url = "http:///x"\nsecret_file = "SECRET_FILE"\n', "webhooks.url: no host"),
    ('url = "http://h:99999/x"\nsecret_file = "SECRET_FILE"\n', "webhooks.url: bad port"),
    ('url = "http://[::1"\nsecret_file = "SECRET_FILE"\n', "webhooks.url: bad URL 'http://[::1': Invalid IPv6 URL"),
    ('url = "http://h:0/x"\nsecret_file = "SECRET_FILE"\n', "webhooks.url: port 0 in 'http://h:0/x'"),
    ('url = "http://a b/x"\nsecret_file = "SECRET_FILE"\n', "webhooks.url: must be printable ASCII without spaces"),
    ('url = "http://h/x\\ny"\nsecret_file = "SECRET_FILE"\n', "webhooks.url: must be printable ASCII without spaces"),
    ('url = "http://h/\\u0001"\nsecret_file = "SECRET_FILE"\n', "webhooks.url: must be printable ASCII without spaces"),
    ('url = "http://h/caf\u00e9"\nsecret_file = "SECRET_FILE"\n', "webhooks.url: must be printable ASCII without spaces"),
    ('url = "https://u:p@h/x"\nsecret_file = "SECRET_FILE"\n', "webhooks.url: must not hold a user or password"),
    ('url = "http://h/x"\nsecret_file = "SECRET_FILE"\nevents = ["ticket.nope"]\n', "unknown event type 'ticket.nope'"),
    ('url = "http://h/x"\nsecret_file = "SECRET_FILE"\nevents = ["*"]\n', "unknown event type '*'"),
    ('url = "http://h/x"\nsecret_file = "SECRET_FILE"\nevents = []\n', "webhooks.events: expected a non-empty list"),
    ('url = "http://h/x"\nsecret_file = "SECRET_FILE"\nmax_attempts = 0\n', "webhooks.max_attempts: must be at least 1"),
    ('url = "http://h/x"\nsecret_file = "SECRET_FILE"\ntimeout_s = 0\n', "webhooks.timeout_s: must be greater than 0"),
    ('url = "http://h/x"\nsecret_file = "SECRET_FILE"\nbackoff_initial_s = 10\nbackoff_max_s = 5\n',
     "backoff_max_s (5) is below backoff_initial_s (10)"),
    ('url = "http://h/x"\nsecret_file = "SECRET_FILE"\nmax_dead_letters = 5\n', "max_dead_letters: must be at least 100"),
    ('url = "http://h/x"\nsecret = "x"\n', "set secret_file (a file holding the signing secret), not secret"),
    ('url = "http://h/x"\nsecret_file = "SECRET_FILE"\nretries = 3\n', "webhooks: unknown option 'retries'"),
])
def test_bad_values_are_refused_with_one_line(tmp_path, body, message):
    with pytest.raises(ConfigError) as refused:
        parse(tmp_path, body)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("secret, message", [
    ("change-me-please-0123456789", "holds a placeholder"),
    ("short", "at least 16 characters"),
    (None, "cannot read"),
    ("", "is empty"),
])
def test_bad_secret_files_are_refused(tmp_path, secret, message):
    with pytest.raises(ConfigError, match=message):
        parse(tmp_path, 'url = "http://h/x"\nsecret_file = "SECRET_FILE"\n', secret=secret)


def test_the_service_refuses_a_bad_webhooks_table_with_exit_2_and_one_line(tmp_path):
    path = write(tmp_path, 'url = "gopher://h/x"\nsecret_file = "SECRET_FILE"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSERVER_")}
    env["MMSERVER_CONFIG"] = str(path)
    result = subprocess.run([sys.executable, "-m", "mmserver"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"mmserver: error: {path}: webhooks.url: expected an http:// or https:// URL, got scheme 'gopher'"]


# --- signing ---

def test_a_signature_verifies_and_any_change_breaks_it():
    body = b'{"id":"1-0","type":"ticket.queued"}'
    header = signing.signature_header(b"k" * 20, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert signing.verify(b"k" * 20, body, header, now=1_700_000_010)
    assert not signing.verify(b"k" * 20, body + b" ", header, now=1_700_000_010)
    assert not signing.verify(b"j" * 20, body, header, now=1_700_000_010)
    assert not signing.verify(b"k" * 20, body, header.replace("t=1700000000", "t=1700000001"), now=1_700_000_010)
    # Older (or newer) than the tolerance: a captured request replayed later is refused.
    assert not signing.verify(b"k" * 20, body, header, now=1_700_000_000 + 301)
    assert not signing.verify(b"k" * 20, body, None, now=1_700_000_000)
    assert not signing.verify(b"k" * 20, body, "v1=abc", now=1_700_000_000)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    import hashlib
    import hmac
    body = b"{}"
    expected = hmac.new(b"secret", b"42.{}", hashlib.sha256).hexdigest()
    assert signing.signature_header(b"secret", 42, body) == f"t=42,v1={expected}"


# --- retries ---

def test_retry_delays_double_up_to_the_cap_and_never_race_an_attempt_in_flight():
    policy = RetryPolicy(max_attempts=10, backoff_initial_s=1, backoff_max_s=300, timeout_s=0.5)
    floor = 0.5 + IN_FLIGHT_MARGIN_S
    assert [policy.delay(n) for n in range(1, 11)] == [floor, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert policy.delay(10_000) == 300
    assert not policy.due(3, 3.9) and policy.due(3, 4.0)
    assert not policy.exhausted(9) and policy.exhausted(10)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0, backoff_initial_s=1, backoff_max_s=2, timeout_s=1)
