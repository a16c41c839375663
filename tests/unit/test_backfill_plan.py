"""The pure backfill planner (mmserver/matchmaking/backfill.py): no Redis, no HTTP."""
from __future__ import annotations

from collections import Counter
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from mmserver.matchmaking import MatchRules, QueuedTicket
from mmserver.matchmaking.backfill import OpenBackfill, Rostered, Slot, assign_roles, plan_backfills
from mmserver.matchmaking.rules import Latency, Rule, Step

NOW = 1_000_000.0
PLAIN = MatchRules(team_size=2, teams=2, mmr_window=100, mmr_window_growth_per_s=10, mmr_window_max=400)


def t(tid, mmr=1500.0, size=1, waited=0.0, **profile):
    for name in ("attributes", "latencies"):
        if name in profile:
            profile[name] = MappingProxyType(profile[name])
    return QueuedTicket(tid, mmr, size, NOW - waited, **profile)


def bf(bid="b1", slots=(Slot(1, 1),), roster=(Rostered(0, 1500, 2), Rostered(1, 1500, 1)), match="m1",
       region=None, created=0.0, expires=NOW + 60, chosen=None):
    return OpenBackfill(bid, match, region, NOW - 10 + created, expires, tuple(slots), tuple(roster),
                        MappingProxyType(chosen or {}))


def fills(backfills, tickets, rules=PLAIN, region=None):
    return [(f.backfill_id, f.ticket_id, f.team, f.roles) for f in plan_backfills(backfills, tickets, rules, NOW, region)]


def test_the_oldest_ticket_within_half_the_window_around_the_mean_fills_the_slot():
    # Window 100 at no wait: |mmr - 1500| <= 50.
    assert fills([bf()], [t("near", 1540), t("older", 1560, waited=0.5), t("oldest", 1530, waited=1)]) == [
        ("b1", "oldest", 1, ())]
    assert fills([bf()], [t("far", 1560)]) == []
    # Waiting widens the window: 100 + 10 * 2 = 120, so 60 from the mean after 2 s.
    assert fills([bf()], [t("far", 1560, waited=2)]) == [("b1", "far", 1, ())]
    # The mean counts each player: a party of two at 1400 and one player at 1700 -> 1500.
    lopsided = bf(roster=(Rostered(0, 1400, 2), Rostered(1, 1700, 1)))
    assert fills([lopsided], [t("a", 1520)]) == [("b1", "a", 1, ())]


def test_a_party_fits_within_one_team_of_the_backfill():
    two_teams = bf(slots=(Slot(0, 1), Slot(1, 1)), roster=(Rostered(0, 1500, 1), Rostered(1, 1500, 1)))
    assert fills([two_teams], [t("party", size=2)]) == []
    one_team = bf(slots=(Slot(1, 2),), roster=(Rostered(0, 1500, 2),))
    assert fills([one_team], [t("party", size=2)]) == [("b1", "party", 1, ())]
    # Too big for the team at all: never eligible.
    assert fills([one_team], [t("huge", size=3)]) == []


def test_each_ticket_fills_one_place_once_and_matches_see_each_other():
    first = bf("b1", slots=(Slot(1, 1),), created=0)
    second = bf("b2", slots=(Slot(0, 1),), created=1)
    planned = fills([second, first], [t("x", 1500, waited=3), t("y", 1500, waited=2), t("z", 1500)])
    assert planned == [("b1", "x", 1, ()), ("b2", "y", 0, ())]


def test_expired_and_other_region_backfills_are_skipped():
    assert fills([bf(expires=NOW)], [t("a")]) == []
    assert fills([bf(region="eu")], [t("a")], region="us") == []
    assert fills([bf(region="eu")], [t("a")], region="eu") == [("b1", "a", 1, ())]


RANKED = MatchRules(team_size=2, teams=2, mmr_window=1000, mmr_window_growth_per_s=0, mmr_window_max=1000,
                    roles=(("tank", 1), ("dps", 1)),
                    rules=(Rule("same-build", "same", "build"), Rule("common-map", "overlap", "maps"),
                           Rule("level-gap", "distance", "level", 10, (Step(30, 40),))),
                    latency=Latency(80, (Step(30, 200),)), regions=("eu", "us"))


def ranked_ticket(tid, *, build="b", maps=("dust2",), level=10.0, latencies=None, region=None,
                  roles=(("tank",),), waited=0.0, size=1):
    return t(tid, 1500, size=size, waited=waited, attributes={"build": build, "maps": maps, "level": level},
             latencies=latencies if latencies is not None else {"eu": 20}, region=region, roles=roles)


def ranked_backfill(slots=(Slot(1, 1, "tank"),)):
    roster = (Rostered(0, 1500, 2, MappingProxyType({"build": "b", "maps": ("dust2", "nuke"), "level": 10.0})),
              Rostered(1, 1500, 1, MappingProxyType({"build": "b", "maps": ("dust2",), "level": 15.0})))
    return bf(slots=slots, roster=roster, region="eu", chosen={"maps": "dust2"})


def test_rules_of_the_mode_hold_with_the_match():
    b = ranked_backfill()
    assert fills([b], [ranked_ticket("ok")], RANKED) == [("b1", "ok", 1, ("tank",))]
    for why, ticket in {
        "role": ranked_ticket("x", roles=(("dps",),)),
        "same": ranked_ticket("x", build="other"),
        "overlap: the match's chosen map": ranked_ticket("x", maps=("nuke",)),
        "distance: 4..15 spreads 11 > 10": ranked_ticket("x", level=4),
        "latency": ranked_ticket("x", latencies={"eu": 100, "us": 5}),
        "fixed region": ranked_ticket("x", region="us", latencies={}),
        "missing attribute": t("x", 1500, attributes={"build": "b"}, latencies={"eu": 5}),
    }.items():
        assert fills([b], [ticket], RANKED) == [], why
    # Within the match's own range, or inside the expanded limit, a value passes.
    assert fills([b], [ranked_ticket("mid", level=12)], RANKED)
    assert fills([b], [ranked_ticket("late", level=4, waited=31)], RANKED)
    assert fills([b], [ranked_ticket("slow", latencies={"eu": 150}, waited=31)], RANKED)
    assert fills([b], [ranked_ticket("fixed", region="eu", latencies={})], RANKED)
    # A ticket offering no roles takes any.
    assert fills([b], [ranked_ticket("any", roles=())], RANKED) == [("b1", "any", 1, ("tank",))]


def test_a_party_needs_a_slot_of_its_role_for_each_member():
    b = ranked_backfill(slots=(Slot(1, 1, "tank"), Slot(1, 1, "dps")))
    b = OpenBackfill(b.backfill_id, b.match_id, b.region, b.created_at, b.expires_at, b.slots,
                     b.roster[:1], b.chosen)
    party = ranked_ticket("p", size=2, roles=(("dps", "tank"), ("dps",)))
    assert fills([b], [party], RANKED) == [("b1", "p", 1, ("tank", "dps"))]
    both_dps = ranked_ticket("q", size=2, roles=(("dps",), ("dps",)))
    assert fills([b], [both_dps], RANKED) == []


def test_assign_roles_backtracks():
    assert assign_roles((("a", "b"), ("a",)), 2, {"a": 1, "b": 1}, ("a", "b")) == ("b", "a")
    assert assign_roles((("a",), ("a",)), 2, {"a": 1, "b": 1}, ("a", "b")) is None
    assert assign_roles((), 2, {"a": 1, "b": 1}, ("a", "b")) == ("a", "b")


def test_the_scan_bounds_the_work_per_backfill():
    crowd = [t(f"c{i}", 1500 + (i % 7), waited=i / 1000) for i in range(5000)]
    planned = plan_backfills([bf(slots=(Slot(1, 1),))], crowd, PLAIN, NOW, scan=16)
    assert len(planned) == 1


@settings(max_examples=200, deadline=None)
@given(
    slots=st.lists(st.tuples(st.integers(0, 1), st.integers(1, 3)), min_size=1, max_size=4),
    queue=st.lists(st.tuples(st.integers(1300, 1700), st.integers(1, 3), st.floats(0, 60)), max_size=40),
    backfills=st.integers(1, 4),
)
def test_no_ticket_twice_and_no_slot_overfilled(slots, queue, backfills):
    rules = MatchRules(team_size=3, teams=2, mmr_window=100, mmr_window_growth_per_s=5, mmr_window_max=400)
    tickets = [t(f"t{i}", mmr, size, waited) for i, (mmr, size, waited) in enumerate(queue)]
    opened = [bf(f"b{k}", slots=[Slot(team, count) for team, count in slots], match=f"m{k % 2}", created=k)
              for k in range(backfills)]
    planned = plan_backfills(opened, tickets, rules, NOW)
    assert len({f.ticket_id for f in planned}) == len(planned)
    by_id = {x.ticket_id: x for x in tickets}
    used = Counter()
    for f in planned:
        used[(f.backfill_id, f.team)] += by_id[f.ticket_id].size
    for b in opened:
        for team in (0, 1):
            assert used[(b.backfill_id, team)] <= sum(s.count for s in b.slots if s.team == team)


def test_a_match_everyone_left_takes_the_oldest_ticket_at_any_mmr():
    empty = bf(slots=(Slot(0, 2), Slot(1, 2)), roster=())
    planned = fills([empty], [t("young", 1500), t("old", 3000, waited=5), t("older", 100, waited=9)])
    assert [p[1] for p in planned] == ["older"]  # then 3000 is 2900 from the new mean: out


def test_the_same_rule_partitions_the_queue():
    b = ranked_backfill()
    crowd = [ranked_ticket(f"o{i}", build="other", waited=10) for i in range(2000)]
    assert fills([b], [*crowd, ranked_ticket("mine")], RANKED) == [("b1", "mine", 1, ("tank",))]
