"""Human-readable text for mmadmin's answers.

The status document grows over time and differs between versions of mmserver, so nothing here
assumes a key is present or has one shape: known sections are laid out for reading, anything
unknown is still printed (as compact JSON) rather than dropped.
"""
from __future__ import annotations

import json
import time
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


# --- mmadmin match / player: one record ------------------------------------------------------

def _is_flat(entry: Any) -> bool:
    """An object whose values all fit in one table cell."""
    return isinstance(entry, Mapping) and all(
        not isinstance(value, Mapping) and not (isinstance(value, list) and any(
            isinstance(item, (Mapping, list)) for item in value))
        for value in entry.values())


def _cell(key: str, value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(scalar(item) for item in value) if value else "(none)"
    number = _number(value)
    if number is not None and (key.endswith("_at") or key.endswith("deadline")):
        # Unix seconds, as the store keeps them: shown with the UTC time they mean.
        moment = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(number))
        return f"{scalar(value)} ({moment})"
    return scalar(value)


def _record_lines(lines: list[str], record: Mapping[str, Any], indent: int) -> None:
    pad = " " * indent
    inline = [key for key, value in record.items()
              if not (isinstance(value, Mapping) and value)
              and not (isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value))]
    width = max((len(str(key)) for key in inline), default=0) + 1
    for raw_key, value in record.items():
        key = str(raw_key)
        if raw_key not in inline:
            if isinstance(value, Mapping):
                lines.append(f"{pad}{key}:")
                _record_lines(lines, value, indent + 2)
            elif all(_is_flat(item) for item in value):
                # A list of flat objects (a team's players): one table row each.
                lines.append(f"{pad}{key} ({len(value)}):")
                columns: list[str] = []
                for item in value:
                    columns.extend(str(name) for name in item if str(name) not in columns)
                rows = [tuple(_cell(name, item.get(name)) for name in columns) for item in value]
                table: list[str] = []
                _columns(table, tuple(columns), rows)
                lines.extend(pad + row for row in table)
            else:
                for index, item in enumerate(value, start=1):
                    lines.append(f"{pad}{key} #{index}:")
                    _record_lines(lines, item, indent + 2)
        else:
            lines.append(f"{pad}{key + ':':<{width}} {_cell(key, value)}".rstrip())


def record_text(kind: str, record: Mapping[str, Any]) -> str:
    """A match or a player as the service describes it, for reading: its id first, then one
    `key: value` line per field, nested objects indented below their name, lists of objects
    (teams, players) as tables. Times in Unix seconds also show as UTC. Nothing is dropped, so
    fields a newer service adds are shown too."""
    id_key = f"{kind}_id"
    lines = [f"{kind} {scalar(record.get(id_key))}"] if id_key in record else []
    _record_lines(lines, {key: value for key, value in record.items() if key != id_key}, 2 if lines else 0)
    return "\n".join(lines) if lines else "(empty)"


# --- mmadmin watch: one frame of the fleet view ------------------------------------------------

# Terminal codes written before each frame when stdout is a terminal: cursor home, clear screen.
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def age(seconds: Any) -> str:
    """A short age: '0.4s', '12s', '3m 2s'; '-' when unknown."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return "-"
    # Clocks of two hosts disagree a little: a timestamp slightly ahead of ours is "now".
    seconds = max(0.0, float(seconds))
    return f"{seconds:.1f}s" if seconds < 10 else duration(seconds)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _since(now: float, timestamp: Any) -> float | None:
    stamp = _number(timestamp)
    return None if stamp is None else now - stamp


def _columns(lines: list[str], header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _replicas_section(lines: list[str], replicas: Any, own_id: Any, now: float) -> None:
    if not isinstance(replicas, list):
        if replicas is not None:
            lines.append(f"replicas: {scalar(replicas)}")
        return
    lines.append(f"replicas ({len(replicas)}):")
    rows = []
    for entry in replicas:
        if not isinstance(entry, Mapping):
            rows.append((" ", scalar(entry), "", "", "", "", "", ""))
            continue
        mark = "*" if own_id is not None and entry.get("id") == own_id else " "
        rows.append((mark, scalar(entry.get("id")), scalar(entry.get("host")), scalar(entry.get("state")),
                     age(_since(now, entry.get("last_tick"))), age(_since(now, entry.get("started_at"))),
                     scalar(entry.get("version")), scalar(entry.get("pid"))))
    if rows:
        _columns(lines, (" ", "ID", "HOST", "STATE", "LAST TICK", "UPTIME", "VERSION", "PID"), rows)
    else:
        lines.append("  (none)")


def _queues_section(lines: list[str], queues: Any) -> None:
    if not isinstance(queues, Mapping):
        if queues is not None:
            lines.append(f"queues: {scalar(queues)}")
        return
    lines.append("queues:")
    rows = []
    for mode, depths in queues.items():
        if isinstance(depths, Mapping):
            rows.append((str(mode), scalar(depths.get("queued")), age(depths.get("oldest_wait_s")),
                         scalar(depths.get("matched")), scalar(depths.get("assigned")),
                         _blocked(depths.get("blocked_by"))))
        else:
            rows.append((str(mode), scalar(depths), "-", "-", "-", "-"))
    if rows:
        _columns(lines, ("MODE", "QUEUED", "OLDEST WAIT", "MATCHED", "ASSIGNED", "WAITING ON"), rows)
    else:
        lines.append("  (none)")


def _blocked(counts: Any) -> str:
    """'level-gap 12, mmr 3': what kept the queue's tickets waiting at the last tick, most first."""
    if not isinstance(counts, Mapping) or not counts:
        return "-"
    ranked = sorted(counts.items(), key=lambda item: (-item[1] if isinstance(item[1], (int, float)) else 0,
                                                      str(item[0])))
    return ", ".join(f"{rule} {scalar(n)}" for rule, n in ranked)


def _workers_section(lines: list[str], workers: Any) -> None:
    if not isinstance(workers, Mapping):
        if workers is not None:
            lines.append(f"workers: {scalar(workers)}")
        return
    lines.append("workers (this replica):")
    width = max((len(str(name)) for name in workers), default=0)
    for name, worker in workers.items():
        label, used = health(worker)
        details = ""
        if isinstance(worker, Mapping):
            # One line per worker: nested tables (the scheduler's jobs) and empty values stay
            # in `mmadmin status`, which shows everything.
            details = " ".join(
                f"{key}={scalar(value)}" for key, value in worker.items()
                if key not in used and value is not None and not isinstance(value, Mapping)
                and value != [])
        lines.append(f"  {str(name):<{width}}  {label:<8} {details}".rstrip())


def watch_text(status: Mapping[str, Any], url: str, now: float) -> str:
    """One frame of `mmadmin watch`: the fleet as seen through one replica's control plane.

    now is this host's wall clock (time.time()), against which replica timestamps become ages.
    """
    lines = [_watch_header(url, now)]
    own = status.get("replica", status.get("replica_id"))
    lines.append(f"replica {scalar(own)}: {scalar(status.get('state', 'unknown'))}"
                 + (f" ({scalar(status['reason'])})" if status.get("reason") is not None else "")
                 + (f", up {duration(status['uptime_s'])}" if "uptime_s" in status else ""))
    if status.get("store_error") is not None:
        lines.append(f"store error: {scalar(status['store_error'])}")
    _replicas_section(lines, status.get("replicas"), own, now)
    _queues_section(lines, status.get("queues"))
    for section in ("sessions", "servers"):
        value = status.get(section)
        if isinstance(value, Mapping):
            lines.append(f"{section + ':':<10} {fields(value) or '(none)'}")
        elif value is not None:
            lines.append(f"{section + ':':<10} {scalar(value)}")
    _workers_section(lines, status.get("workers"))
    return "\n".join(lines)


def watch_error_text(url: str, message: str, now: float) -> str:
    """The frame shown while the control plane does not answer: one line under the header."""
    return f"{_watch_header(url, now)}\nerror: {message}"


def _watch_header(url: str, now: float) -> str:
    return f"mmadmin watch {url}  {time.strftime('%H:%M:%S', time.localtime(now))}"
