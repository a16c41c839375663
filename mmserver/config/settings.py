"""The settings of a run: flags and MMSERVER_* variables -> `Config`.

Every setting is a row of SETTINGS: (name, converter, help). Each has an environment variable
MMSERVER_<NAME> and a flag --<name-with-dashes>; flags win over the environment. Anything
invalid raises ConfigError with one line meant for an operator; nothing is started before the
whole configuration is valid. The TOML file named by MMSERVER_CONFIG is read by file.py.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mmserver import admin_token
from mmserver.config.file import load_config_file
from mmserver.config.model import (
    DEMO_SERVER_TOKEN,
    Config,
    ConfigError,
)
from mmserver.config.values import (
    bearer_secret,
    choice,
    int_at_least,
    milliseconds,
    nonempty_path,
    parse_address,
    positive_seconds,
    redis_url,
    refuse_placeholder,
    refuse_unpresentable,
    seconds,
    sentry_dsn,
)

ENV_PREFIX = "MMSERVER_"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


# name, converter, help. Defaults are the Config dataclass defaults.
SETTINGS: tuple[tuple[str, Callable[[str], Any], str], ...] = (
    ("redis_url", redis_url, "redis://, rediss://, unix:// or redis+sentinel:// URL; unset: embedded Redis"),
    ("data_dir", nonempty_path, "where the embedded Redis keeps its data and the generated admin token"),
    ("listen", parse_address, "public API listener, HOST:PORT"),
    ("admin_listen", parse_address, "control-plane listener, HOST:PORT"),
    ("admin_token", bearer_secret, "bearer token for /admin/*"),
    ("admin_token_file", nonempty_path, "file holding the bearer token for /admin/*"),
    ("config", nonempty_path, "TOML file: modes, matching rules, servers"),
    ("tick_interval_ms", milliseconds(10), "matchmaker tick period"),
    ("redis_reconnect_attempts", int_at_least(0), "subscriber reconnects before it gives up"),
    ("redis_backoff_initial_ms", milliseconds(1), "first reconnect delay, doubling each time"),
    ("redis_backoff_max_ms", milliseconds(1), "cap on the reconnect delay"),
    ("drain_delay_s", seconds, "seconds readiness reports 503 before listeners close"),
    ("shutdown_timeout_s", positive_seconds, "bound on the whole drain-and-flush sequence"),
    ("sentry_dsn", sentry_dsn, "Sentry DSN; unset disables Sentry"),
    ("log_format", choice(LOG_FORMATS), "text or json"),
    ("log_level", choice(LOG_LEVELS, str.upper), "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ("http_threads", int_at_least(4), "waitress worker threads of the public API (the control plane has its own)"),
    ("max_longpolls", int_at_least(0), "long-polls allowed to wait at once; beyond, answer at once"),
    ("max_body_bytes", int_at_least(256), "largest request body accepted (413 beyond)"),
    ("view_cache", int_at_least(0), "ticket views cached in memory, invalidated by pub/sub events; 0: off"),
    ("view_cache_max_age_s", positive_seconds, "a cached ticket view older than this is read from Redis again"),
)


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a ConfigError: one line on stderr and exit 2, like every
    other refusal, instead of argparse's usage block followed by its message."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(f"{message} (mmserver --help lists the flags)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mmserver",
        description="Self-hosted matchmaking service. Every flag also reads MMSERVER_<NAME>; flags win.",
    )
    for name, _convert, help_text in SETTINGS:
        parser.add_argument(flag_name(name), dest=name, default=None, metavar="VALUE",
                            help=f"{help_text} (env {env_name(name)})")
    return parser


def load(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """Build the Config from command-line arguments and environment, or raise ConfigError."""
    parser = build_parser()
    # A usage error (an unknown flag, a flag without its value) raises ConfigError (_Parser);
    # --help prints the help and exits 0.
    args = vars(parser.parse_args(list(argv)))
    values: dict[str, Any] = {}
    for name, convert, _help in SETTINGS:
        raw = args.get(name)
        source = flag_name(name)
        if raw is None:
            raw = environ.get(env_name(name))
            source = env_name(name)
        if raw is None or (raw == "" and source.startswith(ENV_PREFIX)):
            continue  # an empty variable counts as unset, as shells commonly leave them
        try:
            values[name] = convert(raw)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
    return from_values(values)


def from_values(values: Mapping[str, Any]) -> Config:
    """Assemble and cross-check a Config from converted setting values."""
    values = dict(values)
    token_file = values.pop("admin_token_file", None)
    if token_file is not None and "admin_token" not in values:
        values["admin_token"] = _read_token_file(token_file)
    config_file = values.pop("config", None)
    if config_file is not None:
        values["config_file"] = config_file
        values.update(load_config_file(config_file, env_name("config")))
    config = Config(**values)
    _check(config)
    # The demo server token only where creation is open too: a loopback demo, never beside a
    # real [auth] (a production replica behind a local proxy also listens on loopback).
    if config.servers.token is None and config.listen.is_loopback and config.open_creation:
        config = dataclasses.replace(
            config, servers=dataclasses.replace(config.servers, token=DEMO_SERVER_TOKEN))
    return config


def _read_token_file(path: Path) -> str:
    try:
        token = admin_token.read_file(path)
    except admin_token.TokenFileError as error:
        raise ConfigError(f"{env_name('admin_token_file')}: {error}") from None
    refuse_unpresentable(token, env_name("admin_token_file"))  # e.g. a file of two lines
    return token


def _check(config: Config) -> None:
    if config.redis_backoff_max_ms < config.redis_backoff_initial_ms:
        raise ConfigError(
            f"{env_name('redis_backoff_max_ms')} ({config.redis_backoff_max_ms}) is below "
            f"{env_name('redis_backoff_initial_ms')} ({config.redis_backoff_initial_ms})"
        )
    if not config.admin_listen.is_loopback and config.admin_token is None:
        raise ConfigError(
            f"{env_name('admin_listen')} {config.admin_listen} is not a loopback address: "
            f"set {env_name('admin_token')} or {env_name('admin_token_file')}"
        )
    if config.listen == config.admin_listen and config.listen.port != 0:
        raise ConfigError(f"{env_name('listen')} and {env_name('admin_listen')} are the same address")
    if config.open_creation and not config.listen.is_loopback:
        why = "[auth] has open = true" if config.auth is not None else "no [auth] table is configured"
        raise ConfigError(
            f"{env_name('listen')} {config.listen} is not a loopback address and {why}: anyone could "
            f"queue any player with any MMR; configure [auth] in {env_name('config')}"
        )
    if config.admin_token is not None:
        refuse_placeholder(config.admin_token, env_name("admin_token"))
