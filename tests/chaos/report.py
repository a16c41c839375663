"""The summary of a run: a table for people, the same figures as JSON for tools."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

VIOLATION_KINDS = ("lost", "duplicated", "stranded", "state", "reason", "retention", "api", "exit_status", "lifecycle")


def summary(*, options: dict, elapsed_s: float, planned: Counter, injected: Counter, skipped: Counter,
            acknowledged: int, violations: list, exits: list, final_statuses: Counter, traffic: dict,
            orphans: int, api_read: int, problems: list[str], longest_matched_s: float = 0.0) -> dict:
    by_kind = Counter(v.kind for v in violations)
    tickets_hit = {kind: len({v.subject for v in violations if v.kind == kind}) for kind in VIOLATION_KINDS}
    return {
        "options": options,
        "elapsed_s": round(elapsed_s, 1),
        "faults": {"planned": dict(planned), "injected": dict(injected), "skipped": dict(skipped),
                   "total_injected": sum(injected.values())},
        "tickets": {
            "acknowledged": acknowledged,
            "lost": tickets_hit["lost"],
            "duplicated": tickets_hit["duplicated"],
            "stranded": tickets_hit["stranded"],
            "final_status": dict(final_statuses),
            "orphans": orphans,
            "read_through_api": api_read,
            "longest_matched_seen_s": longest_matched_s,
        },
        "exits": {
            "by_status": dict(Counter(e.kind for e in exits)),
            "by_cause": dict(Counter(f"{e.cause}: {e.kind}" for e in exits)),
            "unexpected": [e.__dict__ | {"kind": e.kind} for e in exits if e.unexpected],
        },
        "traffic": traffic,
        "violations": {"count": len(violations), "by_kind": dict(by_kind),
                       "details": [v.as_dict() for v in violations[:200]]},
        "problems": problems,
    }


def table(result: dict) -> str:
    rows: list[tuple[str, object]] = []
    faults = result["faults"]
    rows.append(("faults injected", faults["total_injected"]))
    for kind, n in sorted(faults["injected"].items()):
        rows.append((f"  {kind}", n))
    for kind, n in sorted(faults["skipped"].items()):
        rows.append((f"  skipped {kind}", n))
    tickets = result["tickets"]
    rows += [("tickets acknowledged", tickets["acknowledged"]), ("  lost", tickets["lost"]),
             ("  duplicated", tickets["duplicated"]), ("  stranded", tickets["stranded"])]
    for status, n in sorted(tickets["final_status"].items()):
        rows.append((f"  now {status}", n))
    rows.append(("longest matched seen (s)", round(tickets.get("longest_matched_seen_s", 0.0), 1)))
    rows.append(("exit statuses seen", sum(result["exits"]["by_status"].values())))
    for kind, n in sorted(result["exits"]["by_status"].items()):
        rows.append((f"  {kind}", n))
    rows.append(("unexpected exits", len(result["exits"]["unexpected"])))
    rows.append(("violations", result["violations"]["count"]))
    for kind, n in sorted(result["violations"]["by_kind"].items()):
        rows.append((f"  {kind}", n))
    rows.append(("elapsed (s)", result["elapsed_s"]))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    for detail in result["violations"]["details"][:20]:
        lines.append(f"! {detail['kind']} {detail['subject']}: {detail['detail']}")
    for problem in result["problems"][:20]:
        lines.append(f"! {problem}")
    return "\n".join(lines)


def write(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
