"""A `[modes.NAME]` table: team shapes, attributes, roles, rules, latency, match function.

Each key's shape is checked by its converter here; what keys say about each other (roles add up
to the team size, a rule's attribute is declared and of a type its kind reads, ...) is checked
in `parse_mode`, which names the mode and the rule in its one-line refusal.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Sequence

from mmserver.config.model import ConfigError, ModeConfig
from mmserver.config.values import parse_table, toml_duration, toml_int, toml_number, toml_positive_duration
from mmserver.matchmaking import functions
from mmserver.matchmaking.rules import ATTRIBUTE_TYPES, MMR_RULE, RULE_KINDS, Latency, Rule, Step

# --- match rules of a mode (SPEC "Match rules"): shapes here, cross-checks in parse_mode ---

MAX_ATTRIBUTES = 16
MAX_ROLES = 16
ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")
ROLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
RULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# `blocked_by` names a rule by its name, or one of these: a rule may not take them.
RESERVED_RULE_NAMES = (MMR_RULE, "latency", "roles", "players")
# The types an attribute may have for each rule kind ("mmr" also suits distance).
RULE_ATTRIBUTE_TYPES = {"same": ("string", "number"), "overlap": ("string_list",), "distance": ("number",)}
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
MODE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
FUNCTION_SPEC = re.compile(f"{_DOTTED}:{_DOTTED}")  # "package.module:function"


def _toml_attributes(where: str, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table of name = \"string\" | \"number\" | \"string_list\"")
    if len(value) > MAX_ATTRIBUTES:
        raise ConfigError(f"{where}: declares {len(value)} attributes, at most {MAX_ATTRIBUTES} are allowed")
    for name, kind in value.items():
        if not ATTRIBUTE_NAME.fullmatch(name):
            raise ConfigError(f"{where}: an attribute name is 1-32 letters, digits or '_', got {name!r}")
        if name == MMR_RULE:
            raise ConfigError(f"{where}: the attribute name {MMR_RULE!r} is reserved (the ticket's MMR)")
        if kind not in ATTRIBUTE_TYPES:
            raise ConfigError(f"{where}.{name}: expected one of {', '.join(map(repr, ATTRIBUTE_TYPES))}, "
                              f"got {kind!r}")
    return tuple(value.items())


def _toml_roles(where: str, value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}: expected a table of role = count (players per team)")
    if len(value) > MAX_ROLES:
        raise ConfigError(f"{where}: declares {len(value)} roles, at most {MAX_ROLES} are allowed")
    for role, count in value.items():
        if not ROLE_NAME.fullmatch(role):
            raise ConfigError(f"{where}: a role name is 1-32 letters, digits, '_' or '-', got {role!r}")
        toml_int(1)(f"{where}.{role}", count)
    return tuple(value.items())


def _toml_steps(where: str, value: Any, key: str, base: float) -> tuple[Step, ...]:
    """An expansion: steps {after_s, <key>} that only ever widen the base limit."""
    shape = f"{{after_s = S, {key} = N}}"
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of {shape} tables")
    steps: list[Step] = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(item, dict) or set(item) != {"after_s", key}:
            raise ConfigError(f"{here}: expected {shape}, got {item!r}")
        after_s = toml_duration(f"{here}.after_s", item["after_s"])
        limit = toml_number(f"{here}.{key}", item[key])
        if after_s <= (steps[-1].after_s if steps else 0.0):
            raise ConfigError(f"{here}: after_s ({after_s:g}) must be greater than "
                              + (f"the previous step's ({steps[-1].after_s:g})" if steps else "0"))
        floor, of = (steps[-1].value, "the previous step's") if steps else (base, "the base")
        if limit < floor:
            raise ConfigError(f"{here}: {key} {limit:g} is below {of} {floor:g}: an expansion only widens")
        steps.append(Step(after_s, limit))
    return tuple(steps)


def _toml_rules(where: str, value: Any) -> tuple[Rule, ...]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"{where}: expected [[rules]] tables (name, kind, attribute)")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(value):
        here = f"{where}[{index}]"
        name = table.get("name")
        if name is None:
            raise ConfigError(f"{here}: missing key 'name'")
        if not isinstance(name, str) or not RULE_NAME.fullmatch(name):
            raise ConfigError(f"{here}: a rule name is 1-64 letters, digits, '_', '.' or '-', got {name!r}")
        here = f'{here} "{name}"'
        if name in RESERVED_RULE_NAMES:
            raise ConfigError(f"{here}: the rule name {name!r} is reserved "
                              f"({', '.join(RESERVED_RULE_NAMES)} are names blocked_by uses)")
        if name in seen:
            raise ConfigError(f"{here}: rules[{seen[name]}] has the same name")
        seen[name] = index
        for key in ("kind", "attribute"):
            if key not in table:
                raise ConfigError(f"{here}: missing key {key!r}")
        kind = table["kind"]
        if kind not in RULE_KINDS:
            raise ConfigError(f"{here}: unknown kind {kind!r} (known: {', '.join(RULE_KINDS)})")
        known = ("name", "kind", "attribute") + (("max", "expand") if kind == "distance" else ())
        for key in table:
            if key in ("max", "expand") and kind != "distance":
                raise ConfigError(f"{here}: {key!r} applies only to distance rules, not {kind}")
            if key not in known:
                raise ConfigError(f"{here}: unknown key {key!r} (known: {', '.join(known)})")
        attribute = table["attribute"]
        if not isinstance(attribute, str) or not attribute:
            raise ConfigError(f"{here}: attribute must be an attribute name, got {attribute!r}")
        if kind == "distance":
            if "max" not in table:
                raise ConfigError(f"{here}: missing key 'max' (a distance rule's largest gap)")
            limit = toml_number(f"{here}: max", table["max"])
            expand = _toml_steps(f"{here}: expand", table.get("expand", []), "max", limit)
            rules.append(Rule(name, kind, attribute, limit, expand))
        else:
            rules.append(Rule(name, kind, attribute))
    return tuple(rules)


def _toml_latency(where: str, value: Any) -> Latency:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table (max_ms, optionally expand)")
    for key in value:
        if key not in ("max_ms", "expand"):
            raise ConfigError(f"{where}: unknown key {key!r} (known: max_ms, expand)")
    if "max_ms" not in value:
        raise ConfigError(f"{where}: missing key 'max_ms'")
    limit = toml_number(f"{where}.max_ms", value["max_ms"])
    return Latency(limit, _toml_steps(f"{where}.expand", value.get("expand", []), "max_ms", limit))


def _toml_function_spec(where: str, value: Any) -> str:
    if not isinstance(value, str) or not FUNCTION_SPEC.fullmatch(value):
        raise ConfigError(f"{where}: expected \"module:function\" (e.g. \"mygame.matching:propose\"), got {value!r}")
    return value


MODE_KEYS: dict[str, Callable[[str, Any], Any]] = dict(
    team_size=toml_int(1),
    min_team_size=toml_int(1),
    max_team_size=toml_int(1),
    teams=toml_int(1),  # 1: a lobby
    fill_wait_s=toml_duration,
    accept_timeout_s=toml_duration,
    mmr_window=toml_number,
    mmr_window_growth_per_s=toml_number,
    mmr_window_max=toml_number,
    ticket_ttl_s=toml_positive_duration,
    max_match_s=toml_positive_duration,
    attributes=_toml_attributes,
    roles=_toml_roles,
    rules=_toml_rules,
    latency=_toml_latency,
    match_function=_toml_function_spec,
)
def parse_mode(name: str, table: Any, where: str, regions: Sequence[str] = ()) -> ModeConfig:
    if not name or len(name) > 64 or not set(name) <= MODE_NAME_CHARS:
        raise ConfigError(f"{where}: a mode name is 1-64 letters, digits, '_' or '-'")
    values = parse_table(table, MODE_KEYS, where)
    _team_sizes(values, where)
    mode = ModeConfig(name=name, **values)
    if mode.mmr_window_max < mode.mmr_window:
        raise ConfigError(
            f"{where}: mmr_window_max ({mode.mmr_window_max:g}) is below mmr_window ({mode.mmr_window:g})"
        )
    _check_rules(mode, where)
    if mode.roles:
        if mode.min_team_size is not None:
            raise ConfigError(f"{where}.roles: roles need a fixed team size, not min_team_size "
                              f"{mode.min_team_size} below max_team_size {mode.team_size}")
        total = sum(count for _role, count in mode.roles)
        if total != mode.team_size:
            raise ConfigError(f"{where}.roles: role counts add up to {total}, the team size is {mode.team_size}")
    if mode.latency is not None and not regions:
        raise ConfigError(f"{where}.latency: needs [regions] names (the regions a match may be placed in)")
    if mode.match_function is not None:
        owned = [key for key in ("rules", "roles", "latency") if getattr(mode, key)]
        if owned:
            raise ConfigError(f"{where}: match_function owns the mode's matching rules; remove "
                              f"{', '.join(owned)} (attributes may stay, for the function to read)")
        try:
            functions.load(mode.match_function)
        except functions.MatchFunctionError as error:
            raise ConfigError(f"{where}.match_function: {error}") from None
    return mode


def _team_sizes(values: dict[str, Any], where: str) -> None:
    """team_size, or max_team_size with optional min_team_size: leaves team_size (the largest
    team) and min_team_size (only when below it) in `values`."""
    if "team_size" in values and ("min_team_size" in values or "max_team_size" in values):
        raise ConfigError(f"{where}: set team_size, or max_team_size (with min_team_size), not both")
    if "min_team_size" in values and "max_team_size" not in values:
        raise ConfigError(f"{where}: min_team_size needs max_team_size")
    if "max_team_size" in values:
        largest = values.pop("max_team_size")
        smallest = values.pop("min_team_size", largest)
        if smallest > largest:
            raise ConfigError(f"{where}: min_team_size ({smallest}) is above max_team_size ({largest})")
        values["team_size"] = largest
        if smallest < largest:
            values["min_team_size"] = smallest
    if "fill_wait_s" in values and "min_team_size" not in values:
        raise ConfigError(f"{where}: fill_wait_s needs a variable team size (min_team_size below max_team_size)")


def _check_rules(mode: ModeConfig, where: str) -> None:
    """Each rule's attribute is declared (or "mmr" for distance) and of a type its kind reads."""
    declared = dict(mode.attributes)
    section = f"[modes.{mode.name}.attributes]"
    for index, rule in enumerate(mode.rules):
        here = f'{where}.rules[{index}] "{rule.name}"'
        if rule.attribute == MMR_RULE:
            if rule.kind != "distance":
                raise ConfigError(f"{here}: attribute {MMR_RULE!r} (the ticket's MMR) suits only distance rules")
            continue
        kind = declared.get(rule.attribute)
        if kind is None:
            raise ConfigError(f"{here}: attribute {rule.attribute!r} is not declared in {section}")
        suits = RULE_ATTRIBUTE_TYPES[rule.kind]
        if kind not in suits:
            also = f" or {MMR_RULE!r}" if rule.kind == "distance" else ""
            raise ConfigError(f"{here}: attribute {rule.attribute!r} is a {kind}; {rule.kind} rules read "
                              f"a {' or '.join(suits)}{also}")
