"""The TOML file (MMSERVER_CONFIG): a deployment's modes, servers, regions, auth, limits,
events and webhooks, parsed into the tables of `Config`. Modes are parsed by modes.py.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mmserver import small_file
from mmserver.config.model import (
    MIN_JWT_SECRET_BYTES,
    MIN_SECRET_CHARS,
    AuthConfig,
    ConfigError,
    EventsConfig,
    LimitsConfig,
    ServersConfig,
    WebhooksConfig,
)
from mmserver.config.modes import parse_mode
from mmserver.config.values import (
    parse_table,
    read_secret_file,
    split_url,
    refuse_placeholder,
    refuse_short,
    refuse_unpresentable,
    toml_bool,
    toml_claims,
    toml_int,
    toml_path,
    toml_positive,
    toml_positive_duration,
    toml_secrets,
    toml_static,
    toml_string,
    toml_token,
    why,
)

_SERVER_KEYS: dict[str, Callable[[str, Any], Any]] = dict(
    token=toml_token,
    token_file=toml_path,
    static=toml_static,
    heartbeat_ttl_s=toml_positive_duration,
    allocation_timeout_s=toml_positive_duration,
    retention_s=toml_positive_duration,
)
_AUTH_KEYS: dict[str, Callable[[str, Any], Any]] = dict(
    backend_keys=toml_secrets,
    backend_keys_file=toml_path,
    player_jwt_secret_file=toml_path,
    player_jwt_public_key_file=toml_path,
    player_jwt_issuer=toml_string,
    player_jwt_audience=toml_string,
    trusted_claims=toml_claims,
    open=toml_bool,
)
_LIMIT_KEYS: dict[str, Callable[[str, Any], Any]] = dict(
    poll_per_s=toml_positive,
    poll_burst=toml_int(1),
    create_per_min=toml_positive,
    create_burst=toml_int(1),
    backend_per_s=toml_positive,
    backend_burst=toml_int(1),
    address_per_s=toml_positive,
    address_burst=toml_int(1),
)
_EVENT_KEYS: dict[str, Callable[[str, Any], Any]] = dict(
    max_len=toml_int(1000),
    max_age_s=toml_positive_duration,
)
MAX_REGIONS = 64
REGION_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


def read_config_bytes(path: Path, where: str) -> bytes:
    """The file's bytes, or ConfigError: a device (/dev/zero), a FIFO or a directory is refused at
    once, and so is a file over 1 MiB (small_file.py)."""
    try:
        return small_file.read_bytes(path)
    except small_file.NotASmallFile as error:
        raise ConfigError(f"{where}: {path} {error}") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot read {path}: {why(error)}") from None


def load_config_file(path: Path, where: str) -> dict[str, Any]:
    """The file's tables as Config values; `where` names the setting that gave the path."""
    data = read_config_bytes(path, where)
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: {path} is not valid TOML: {error}") from None
    except UnicodeDecodeError as error:  # TOML is UTF-8 text; tomllib lets the decoder's error out
        raise ConfigError(f"{where}: {path} is not UTF-8 text: {error.reason} at byte {error.start}") from None
    except ValueError as error:
        # tomllib's own int() of a literal over sys.get_int_max_str_digits() digits; the advice
        # after ';' (raise the limit in code) is not the operator's to follow.
        raise ConfigError(f"{where}: {path} is not valid TOML: {str(error).split(';')[0]}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(f"{where}: {path} is not valid TOML: arrays or tables nested too deeply") from None
    return parse_config_document(document, f"{path}")


SECTIONS = ("modes", "servers", "regions", "auth", "limits", "events", "webhooks")


def parse_config_document(document: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = set(document) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{where}: unknown section {sorted(unknown)[0]!r} (known: {', '.join(SECTIONS)})")
    result: dict[str, Any] = {}
    # Regions first: a mode's [latency] places matches in them.
    regions: tuple[str, ...] = ()
    if "regions" in document:
        regions = _parse_regions(document["regions"], f"{where}: regions")
        result["regions"] = regions
    modes_table = document.get("modes")
    if modes_table is None:
        # A file is a deployment's whole description: no silent fallback to the demo mode.
        raise ConfigError(f"{where}: configures no mode; add a [modes.NAME] table")
    if not isinstance(modes_table, dict) or not modes_table:
        raise ConfigError(f"{where}: [modes] must hold at least one [modes.NAME] table")
    result["modes"] = {
        name: parse_mode(name, table, f"{where}: modes.{name}", regions) for name, table in modes_table.items()
    }
    if "servers" in document:
        result["servers"] = _parse_servers(document["servers"], f"{where}: servers", regions)
    if "auth" in document:
        result["auth"] = _parse_auth(document["auth"], f"{where}: auth")
    if "limits" in document:
        result["limits"] = LimitsConfig(**parse_table(document["limits"], _LIMIT_KEYS, f"{where}: limits"))
    if "events" in document:
        result["events"] = EventsConfig(**parse_table(document["events"], _EVENT_KEYS, f"{where}: events"))
    if "webhooks" in document:
        result["webhooks"] = _parse_webhooks(document["webhooks"], f"{where}: webhooks")
    return result


def _parse_servers(table: Any, where: str, regions: Sequence[str]) -> ServersConfig:
    if isinstance(table, dict) and "token" in table and "token_file" in table:
        raise ConfigError(f"{where}: set token or token_file, not both")
    values = parse_table(table, _SERVER_KEYS, where)
    if "token_file" in values:
        values["token"] = read_secret_file(values.pop("token_file"), f"{where}.token_file")
    if "token" in values:
        refuse_placeholder(values["token"], f"{where}.token")
        refuse_short(values["token"], f"{where}.token", MIN_SECRET_CHARS)
        refuse_unpresentable(values["token"], f"{where}.token")
    static = values.pop("static", ())
    addresses, static_regions = [], {}
    for address, region in static:
        if region is not None:
            if region not in regions:
                raise ConfigError(f"{where}.static: region {region!r} of {address} is not in [regions] names")
            static_regions[address] = region
        addresses.append(address)
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f"{where}.static: an address is listed twice")
    servers = ServersConfig(static=tuple(addresses), static_regions=static_regions, **values)
    if servers.retention_s < servers.heartbeat_ttl_s:
        raise ConfigError(f"{where}: retention_s ({servers.retention_s:g}) is below heartbeat_ttl_s "
                          f"({servers.heartbeat_ttl_s:g})")
    return servers


def _parse_regions(table: Any, where: str) -> tuple[str, ...]:
    if not isinstance(table, dict) or set(table) != {"names"}:
        raise ConfigError(f"{where}: expected one option, names = [\"region\", ...]")
    names = table["names"]
    if not isinstance(names, list) or not names or len(names) > MAX_REGIONS:
        raise ConfigError(f"{where}.names: expected a list of 1 to {MAX_REGIONS} region names")
    for name in names:
        if not isinstance(name, str) or not REGION_NAME.fullmatch(name):
            raise ConfigError(f"{where}.names: a region name is 1-32 letters, digits, '_' or '-', got {name!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.names: a region is listed twice")
    return tuple(names)


def _parse_auth(table: Any, where: str) -> AuthConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    for a, b in (("backend_keys", "backend_keys_file"), ("player_jwt_secret_file", "player_jwt_public_key_file")):
        if a in table and b in table:
            raise ConfigError(f"{where}: set {a} or {b}, not both")
    values = parse_table(table, _AUTH_KEYS, where)
    keys: tuple[str, ...] = values.pop("backend_keys", ())
    if "backend_keys_file" in values:
        path = values.pop("backend_keys_file")
        text = read_secret_file(path, f"{where}.backend_keys_file")
        keys = tuple(line.strip() for line in text.splitlines()
                     if line.strip() and not line.strip().startswith("#"))
        if not keys:
            raise ConfigError(f"{where}.backend_keys_file: {path} holds no key")
    for key in keys:
        refuse_placeholder(key, f"{where}.backend_keys")
        refuse_short(key, f"{where}.backend_keys", MIN_SECRET_CHARS)
        refuse_unpresentable(key, f"{where}.backend_keys")
    values["backend_keys"] = keys
    if "player_jwt_secret_file" in values:
        field_name = f"{where}.player_jwt_secret_file"
        secret = read_secret_file(values.pop("player_jwt_secret_file"), field_name)
        refuse_placeholder(secret, field_name)
        refuse_short(secret, field_name, MIN_JWT_SECRET_BYTES)
        values["player_jwt_key"], values["player_jwt_algorithm"] = secret, "HS256"
    elif "player_jwt_public_key_file" in values:
        field_name = f"{where}.player_jwt_public_key_file"
        pem = read_secret_file(values.pop("player_jwt_public_key_file"), field_name)
        values["player_jwt_key"], values["player_jwt_algorithm"] = pem, _public_key_algorithm(pem, field_name)
    auth = AuthConfig(**values)
    if not auth.open and not auth.backend_keys and auth.player_jwt_key is None:
        raise ConfigError(f"{where}: names no credential; set backend_keys_file (or backend_keys) "
                          f"or player_jwt_secret_file (or player_jwt_public_key_file)")
    for key in ("trusted_claims", "player_jwt_issuer", "player_jwt_audience"):
        # Without a key no player token is verified: the option would silently do nothing.
        if getattr(auth, key) and auth.player_jwt_key is None:
            raise ConfigError(f"{where}.{key}: needs player JWTs (player_jwt_secret_file or "
                              f"player_jwt_public_key_file)")
    return auth


def _public_key_algorithm(pem: str, where: str) -> str:
    # The algorithm follows from the key, never from a token's header (RS/HS confusion).
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    try:
        key = load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ConfigError(f"{where}: not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ES256"
    raise ConfigError(f"{where}: expected an RSA or P-256 EC public key")


# --- [webhooks] (docs/WEBHOOKS.md) ---

# Types of the backfill events added beside EVENT_TYPES; any "backfill." type is accepted so the
# two features do not depend on each other's lists.
WEBHOOK_TYPE_PREFIXES = ("ticket.", "match.", "backfill.")
WEBHOOK_EVENT_NAME = re.compile(r"[a-z_]+\.(?:[a-z_]+|\*)")


def _toml_url(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected an http:// or https:// URL")
    url = value.strip()
    if not all("!" <= char <= "~" for char in url):
        # http.client sends the target as ASCII and refuses spaces and control characters:
        # every attempt would fail.
        raise ConfigError(f"{where}: must be printable ASCII without spaces (percent-encode the rest), "
                          f"got {url!r}")
    try:
        parsed = split_url(url, url)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise ConfigError(f"{where}: expected an http:// or https:// URL, got scheme {parsed.scheme or '(none)'!r}")
    if not parsed.hostname:
        raise ConfigError(f"{where}: no host in {url!r}")
    try:
        port = parsed.port  # raises on a bad port
    except ValueError:
        raise ConfigError(f"{where}: bad port in {url!r}") from None
    if port == 0:
        raise ConfigError(f"{where}: port 0 in {url!r}")
    if parsed.username or parsed.password:
        # The URL is shown in logs and /admin/status: credentials belong in the signature.
        raise ConfigError(f"{where}: must not hold a user or password (receivers check the signature)")
    if parsed.fragment:
        raise ConfigError(f"{where}: must not hold a #fragment")
    return url


def _toml_event_types(where: str, value: Any) -> tuple[str, ...]:
    from mmserver.store.events import EVENT_TYPES  # the store imports this module

    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a non-empty list of event types (\"ticket.assigned\", \"match.*\", ...)")
    for name in value:
        known = name in EVENT_TYPES or (
            WEBHOOK_EVENT_NAME.fullmatch(name) is not None
            and (name.endswith(".*") and name[:-1] in WEBHOOK_TYPE_PREFIXES or name.startswith("backfill.")))
        if not known:
            raise ConfigError(f"{where}: unknown event type {name!r} (known: {', '.join(EVENT_TYPES)}, "
                              f"backfill.*, or a prefix such as \"ticket.*\")")
    return tuple(dict.fromkeys(value))


_WEBHOOK_KEYS: dict[str, Callable[[str, Any], Any]] = dict(
    url=_toml_url,
    secret_file=toml_path,
    events=_toml_event_types,
    max_attempts=toml_int(1),
    timeout_s=toml_positive_duration,
    backoff_initial_s=toml_positive_duration,
    backoff_max_s=toml_positive_duration,
    max_dead_letters=toml_int(100),
)


def _parse_webhooks(table: Any, where: str) -> WebhooksConfig:
    if isinstance(table, dict) and "secret" in table:
        # Only a file: an inline secret ends up in version control with the rest of the file.
        raise ConfigError(f"{where}: set secret_file (a file holding the signing secret), not secret")
    values = parse_table(table, _WEBHOOK_KEYS, where)
    for key in ("url", "secret_file"):
        if key not in values:
            raise ConfigError(f"{where}: missing key {key!r}")
    secret = read_secret_file(values.pop("secret_file"), f"{where}.secret_file")
    refuse_placeholder(secret, f"{where}.secret_file")
    refuse_short(secret, f"{where}.secret_file", MIN_SECRET_CHARS)
    webhooks = WebhooksConfig(secret=secret, **values)
    if webhooks.backoff_max_s < webhooks.backoff_initial_s:
        raise ConfigError(f"{where}: backoff_max_s ({webhooks.backoff_max_s:g}) is below backoff_initial_s "
                          f"({webhooks.backoff_initial_s:g})")
    return webhooks
