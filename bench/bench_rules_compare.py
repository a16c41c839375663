"""Do two versions of the matcher give the same answers? Proposals and blocked_by, compared.

Random queues for modes with rules (and plain ones), generated from fixed seeds, are matched by
this checkout's mmserver.matchmaking and by another git revision's (exported with `git archive`
into a temporary directory), each in a subprocess that imports only its own copy (python -S:
not the editable install); every proposal (teams, spread, region,
roles, chosen attributes) and every blocked_by entry must be identical. Cases: many small and
mid-sized queues with every feature (parties, roles, `same`/`overlap`/`distance` rules,
latencies and fixed regions, lobbies that fill, missing attributes), and bench_rules_matcher's
big 5v5 queue at a few instants.

    .venv/bin/python bench/bench_rules_compare.py [--ref main] [--cases 400] [--big 20000]

Exit status 0 when every case is identical; the first differences are printed otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_000_000.0
REGIONS = ("eu", "us", "asia")
ROLE_NAMES = ("tank", "healer", "dps")


def random_mode(rnd: random.Random):
    from mmserver.matchmaking import MatchRules
    from mmserver.matchmaking.rules import Latency, Rule, Step

    team_size = rnd.randint(1, 5)
    teams = rnd.randint(1, 3)
    roles = ()
    min_team = None
    if rnd.random() < 0.6:
        names = rnd.sample(ROLE_NAMES, rnd.randint(1, 3))
        cuts = sorted(rnd.randint(0, team_size) for _ in range(len(names) - 1))
        counts = [b - a for a, b in zip([0, *cuts], [*cuts, team_size])]
        roles = tuple((n, c) for n, c in zip(names, counts) if c > 0)
    elif rnd.random() < 0.5:
        min_team = rnd.randint(1, team_size)
    rules = []
    if rnd.random() < 0.5:
        rules.append(Rule("same-build", "same", "build"))
    if rnd.random() < 0.3:
        rules.append(Rule("same-tier", "same", "tier"))
    if rnd.random() < 0.4:
        rules.append(Rule("common-map", "overlap", "maps"))
    if rnd.random() < 0.5:
        base = rnd.randint(0, 10)
        expand = (Step(rnd.randint(1, 20), base + rnd.randint(1, 10)),) if rnd.random() < 0.5 else ()
        rules.append(Rule("level-gap", "distance", "level", base, expand))
    if rnd.random() < 0.3:
        rules.append(Rule("mmr-gap", "distance", "mmr", rnd.randint(0, 200)))
    latency = None
    regions = ()
    if rnd.random() < 0.6:
        base = rnd.randint(20, 80)
        expand = (Step(rnd.randint(1, 20), base + rnd.randint(1, 60)),) if rnd.random() < 0.5 else ()
        latency = Latency(base, expand)
        regions = REGIONS[:rnd.randint(2, 3)]
    rnd.shuffle(rules)
    return MatchRules(team_size, teams, rnd.choice([0.0, 50.0, 150.0, 400.0]), rnd.choice([0.0, 5.0, 20.0]),
                      1000.0, min_team_size=min_team, fill_wait_s=rnd.choice([0.0, 10.0, 100.0]), roles=roles,
                      rules=tuple(rules), latency=latency, regions=regions)


def random_queue(rnd: random.Random, rules, count: int):
    from mmserver.matchmaking import QueuedTicket

    parties = rnd.random() < 0.5
    spread = rnd.choice([100, 300, 1000])
    out = []
    for n in range(count):
        size = 1
        if parties and rnd.random() < 0.4:
            size = rnd.randint(1, rules.team_size + (rnd.random() < 0.1))
        attributes = {}
        if rnd.random() < 0.9:
            attributes["build"] = rnd.choice(["a", "b", "c"])
        if rnd.random() < 0.8:
            attributes["tier"] = rnd.choice(["x", "y"])
        if rnd.random() < 0.9:
            attributes["maps"] = tuple(rnd.sample(["m1", "m2", "m3", "m4"], rnd.randint(0, 3)))
        if rnd.random() < 0.9:
            attributes["level"] = float(rnd.randint(0, 30))
        latencies = {r: rnd.choice([10.0, 40.0, 70.0, 100.0, 140.0]) for r in REGIONS if rnd.random() < 0.8}
        region = rnd.choice(REGIONS) if rnd.random() < 0.15 else None
        roles = ()
        if rules.roles and rnd.random() < 0.8:
            choices = [name for name, _ in rules.roles] + ["other"]
            roles = tuple(tuple(rnd.sample(choices, rnd.randint(1, min(3, len(choices))))) for _ in range(size))
            if rnd.random() < 0.03:
                roles = roles[:-1]  # wrong length: not eligible
        mmr = (float(rnd.randint(1000, 1000 + spread)) if rnd.random() < 0.5
               else rnd.gauss(1000 + spread / 2, spread / 4))
        out.append(QueuedTicket(f"t{n:05d}", mmr, size, NOW - rnd.randint(0, 40), attributes, latencies,
                                region, roles, tuple(f"p{n}.{k}" for k in range(size))))
    rnd.shuffle(out)
    return out


def big_cases(count: int):
    """bench_rules_matcher's 5v5 queue: matching at a few instants, and the steady rules."""
    import bench_rules_matcher as brm  # on the subprocess's PYTHONPATH

    tickets = brm.make_queue(count, seed=count)
    for label, rules, now in (("big-matching", brm.mode(True), brm.NOW), ("big-later", brm.mode(True), brm.NOW + 25),
                              ("big-steady", brm.mode(False), brm.NOW)):
        yield label, rules, tickets, now


def cases(count: int, big: int):
    rnd = random.Random(20261206)
    for k in range(count):
        rules = random_mode(rnd)
        size = rnd.choice([0, 3, 8, 20, 60, 200, 600])
        yield f"random-{k}", rules, random_queue(rnd, rules, size), NOW
    if big:
        yield from big_cases(big)


def describe(matching) -> list:
    """The answer as plain values, in order."""
    out = []
    for p in matching.proposals:
        out.append(["proposal", [list(team) for team in p.teams], repr(p.mmr_spread), p.region,
                    sorted((k, list(v)) for k, v in p.roles.items()), sorted(p.attributes.items())])
    out.append(["blocked", sorted(matching.blocked.items())])
    return out


def run_here(count: int, big: int) -> dict:
    """Answers of the mmserver importable from sys.path, by case: a digest and the answer."""
    from mmserver.matchmaking import match_queue

    import mmserver
    print(f"matcher from {Path(mmserver.__file__).parent}", file=sys.stderr)

    answers = {}
    for label, rules, tickets, now in cases(count, big):
        answer = describe(match_queue(tickets, rules, now))
        text = json.dumps(answer)
        answers[label] = {"digest": hashlib.sha256(text.encode()).hexdigest(), "answer": answer,
                          "proposals": len(answer) - 1, "blocked": len(answer[-1][1])}
    return answers


def _answers_of(source: Path, count: int, big: int) -> dict:
    """Run this script in a subprocess that imports mmserver from `source` only (-S: no site
    packages, so not the editable install either; the matcher needs none)."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "answers.json"
        bench = Path(__file__).resolve().parent
        subprocess.run([sys.executable, "-S", str(Path(__file__).resolve()), "--here", str(out), "--cases", str(count),
                        "--big", str(big)], check=True,
                       env={"PYTHONPATH": f"{source}:{bench}", "PATH": "/usr/bin:/bin"})
        return json.loads(out.read_text())


def run_at(ref: str, count: int, big: int) -> dict:
    """The answers of the matcher at git revision `ref`."""
    with tempfile.TemporaryDirectory() as directory:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "mmserver"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
        return _answers_of(Path(directory), count, big)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="the git revision to compare with")
    parser.add_argument("--cases", type=int, default=400)
    parser.add_argument("--big", type=int, default=20_000, help="tickets in the big queue (0: none)")
    parser.add_argument("--here", type=Path, help=argparse.SUPPRESS)  # internal: write this version's answers
    args = parser.parse_args(argv)
    if args.here:
        args.here.write_text(json.dumps(run_here(args.cases, args.big)))
        return 0
    theirs = run_at(args.ref, args.cases, args.big)
    ours = _answers_of(ROOT, args.cases, args.big)
    differ = [label for label in ours if ours[label]["digest"] != theirs[label]["digest"]]
    proposals = sum(a["proposals"] for a in ours.values())
    blocked = sum(a["blocked"] for a in ours.values())
    print(f"{len(ours)} cases against {args.ref}: {proposals:,} proposals, {blocked:,} blocked_by entries; "
          f"{len(differ)} differ")
    for label in differ[:5]:
        a, b = theirs[label]["answer"], ours[label]["answer"]
        first = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        print(f"  {label}: first difference at entry {first}:\n    {args.ref}: {str(a[first:first + 1])[:300]}\n"
              f"    here: {str(b[first:first + 1])[:300]}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
