"""Human-readable text for mmadmin's answers.

The status document grows over time and differs between versions of mmserver, so nothing here
assumes a key is present or has one shape: known sections are laid out for reading, anything
unknown is still printed (as compact JSON) rather than dropped.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

# Sections laid out specially, in this order; any other key follows under its own name.
KNOWN_ORDER = ("state", "reason", "uptime_s", "uptime", "replica", "replica_id", "workers", "queues",
               "sessions", "servers", "replicas")
HEALTH_KEYS = ("healthy", "alive", "ok", "running", "connected")
STATE_KEYS = ("state", "status", "health")


def scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def fields(data: Mapping[str, Any], skip: Iterable[str] = ()) -> str:
    skipped = set(skip)
    return " ".join(f"{key}={scalar(value)}" for key, value in data.items() if key not in skipped)


def duration(seconds: Any) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return scalar(seconds)
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return " ".join(parts)


def health(worker: Any) -> tuple[str, list[str]]:
    """(label, keys used for it) for one worker's entry, whatever its shape."""
    if isinstance(worker, bool):
        return ("ok" if worker else "DOWN"), []
    if not isinstance(worker, Mapping):
        return scalar(worker), []
    for key in HEALTH_KEYS:
        if isinstance(worker.get(key), bool):
            return ("ok" if worker[key] else "DOWN"), [key]
    for key in STATE_KEYS:
        if isinstance(worker.get(key), str):
            return worker[key], [key]
    return "?", []


def _named(items: Any, name_keys: tuple[str, ...]) -> list[tuple[str, Any]]:
    """[(name, entry)] from a mapping name -> entry, or a list of entries naming themselves."""
    if isinstance(items, Mapping):
        return [(str(name), entry) for name, entry in items.items()]
    if isinstance(items, list):
        named = []
        for index, entry in enumerate(items):
            name = next((str(entry[key]) for key in name_keys
                         if isinstance(entry, Mapping) and key in entry), f"#{index}")
            named.append((name, entry))
        return named
    return []


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(row, Mapping) for row in value.values())


def _table(lines: list[str], title: str, items: Any, name_keys: tuple[str, ...],
           with_health: bool = False) -> None:
    if not isinstance(items, (Mapping, list)):
        lines.append(f"{title + ':':<10} {scalar(items)}")
        return
    entries = _named(items, name_keys)
    lines.append(f"{title} ({len(entries)}):" if isinstance(items, list) else f"{title}:")
    if not entries:
        lines.append("  (none)")
    width = max((len(name) for name, _ in entries), default=0)
    for name, entry in entries:
        if with_health:
            label, used = health(entry)
            if not isinstance(entry, Mapping):
                lines.append(f"  {name:<{width}}  {label}")
                continue
            # A table inside a worker (the scheduler's jobs) gets one line per row below it.
            nested = [key for key, value in entry.items() if _is_table(value)]
            rest = fields(entry, skip=[*used, *name_keys, *nested])
            lines.append(f"  {name:<{width}}  {label:<8} {rest}".rstrip())
            for key in nested:
                for row, row_fields in entry[key].items():
                    lines.append(f"      {key} {row}: {fields(row_fields)}".rstrip())
        elif isinstance(entry, Mapping):
            lines.append(f"  {name:<{width}}  {fields(entry, skip=name_keys)}".rstrip())
        else:
            lines.append(f"  {name:<{width}}  {scalar(entry)}")


def _counts(lines: list[str], title: str, value: Any) -> None:
    if isinstance(value, Mapping) and all(not isinstance(v, (Mapping, list)) for v in value.values()):
        lines.append(f"{title + ':':<10} {fields(value) or '(none)'}")
    elif isinstance(value, (Mapping, list)):
        _table(lines, title, value, ("id", "name"))
    else:
        lines.append(f"{title + ':':<10} {scalar(value)}")


def status_text(status: Mapping[str, Any]) -> str:
    lines: list[str] = []
    lines.append(f"{'state:':<10} {scalar(status.get('state', 'unknown'))}")
    if status.get("reason") is not None:
        lines.append(f"{'reason:':<10} {scalar(status['reason'])}")
    if "uptime_s" in status or "uptime" in status:
        lines.append(f"{'uptime:':<10} {duration(status.get('uptime_s', status.get('uptime')))}")
    for key in ("replica", "replica_id"):
        if key in status:
            lines.append(f"{'replica:':<10} {scalar(status[key])}")
    if "workers" in status:
        _table(lines, "workers", status["workers"], ("name",), with_health=True)
    if "queues" in status:
        _table(lines, "queues", status["queues"], ("mode", "name"))
    for section in ("sessions", "servers"):
        if section in status:
            _counts(lines, section, status[section])
    if "replicas" in status:
        _table(lines, "replicas", status["replicas"], ("id", "replica_id"))
    for key, value in status.items():
        if key not in KNOWN_ORDER:
            lines.append(f"{key + ':':<10} {scalar(value)}")
    return "\n".join(lines)


def action_text(answer: Mapping[str, Any]) -> str:
    """One line for the answer to drain or shutdown."""
    state = scalar(answer.get("state", "unknown"))
    rest = fields(answer, skip=["state"])
    return f"state: {state}" + (f" ({rest})" if rest else "")
