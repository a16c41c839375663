"""The failure memo (matchmaking/memo.py) changes none of the matcher's answers, only its cost.

Every test runs a queue through ticks twice, with the memo and without, and compares every
proposal and every blocked_by entry; between ticks tickets arrive, are cancelled, are
claimed, or come back after a claim that failed, and the clock moves.
"""
import random
from math import floor, nextafter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmserver.matchmaking import MatchRules, QueuedTicket, constrained, match_queue
from mmserver.matchmaking.memo import FailureMemo
from mmserver.matchmaking.rules import Latency, Rule, Step
from tests.unit.test_constrained import modes, queues

NOW = 1_000_000.0
REGIONS = ("eu", "us", "asia")


def random_mode(rnd: random.Random) -> MatchRules:
    team_size = rnd.randint(1, 5)
    names = rnd.sample(["tank", "healer", "dps"], rnd.randint(1, 3)) if rnd.random() < 0.7 else []
    cuts = sorted(rnd.randint(0, team_size) for _ in range(max(len(names) - 1, 0)))
    counts = [b - a for a, b in zip([0, *cuts], [*cuts, team_size])]
    roles = tuple((n, c) for n, c in zip(names, counts) if c > 0)
    rules = [rule for rule, chance in ((Rule("same-build", "same", "build"), 0.5),
                                       (Rule("common-map", "overlap", "maps"), 0.3),
                                       (Rule("level-gap", "distance", "level", 5.0, (Step(30.0, 12.0),)), 0.6))
             if rnd.random() < chance]
    latency = Latency(60.0, (Step(20.0, 110.0),)) if rnd.random() < 0.6 else None
    min_team = rnd.randint(1, team_size) if not roles and rnd.random() < 0.4 else None
    return MatchRules(team_size, rnd.randint(1, 3), rnd.choice([50.0, 150.0]), rnd.choice([0.0, 5.0]),
                      rnd.choice([300.0, 1000.0]), min_team_size=min_team, fill_wait_s=rnd.choice([10.0, 100.0]),
                      roles=roles, rules=tuple(rules), latency=latency, regions=REGIONS if latency else ())


def random_ticket(rnd: random.Random, rules: MatchRules, name: str, enqueued_at: float,
                  coarse: bool = False) -> QueuedTicket:
    size = rnd.randint(1, rules.team_size) if rnd.random() < 0.2 else 1
    roles = ()
    if rules.roles:
        # Few players offer the first role: queues that keep many tickets waiting.
        offered = [n for n, _ in rules.roles]
        roles = tuple((rnd.choice(offered[1:] or offered),) if rnd.random() < 0.8 else tuple(offered)
                      for _ in range(size))
    attributes = {"build": rnd.choice("ab"), "maps": tuple(rnd.sample(["m1", "m2", "m3"], rnd.randint(1, 2))),
                  "level": float(rnd.randint(0, 40))}
    latencies = {r: rnd.choice([20.0, 50.0, 90.0, 150.0]) for r in REGIONS}
    mmr = rnd.gauss(1500, 200)
    if coarse:  # MMRs in steps of 10: many tickets share one
        mmr = float(round(mmr / 10) * 10)
    return QueuedTicket(name, mmr, size, enqueued_at, attributes, latencies, None, roles,
                        tuple(f"{name}.{k}" for k in range(size)))


def ticks_agree(rules: MatchRules, queue: list, arrivals: list, rnd: random.Random, ticks: int) -> FailureMemo:
    """Runs `ticks` ticks with and without a memo; returns the memo. Each tick reads the queue
    in another order (as the store does: by TTL deadline, which reads push back), proposals
    are claimed (one in five fails: its tickets stay queued), a few tickets cancel, a few of
    `arrivals` join, and the clock moves on (often by little: limits stay the same)."""
    memo = FailureMemo()
    now = NOW
    for _ in range(ticks):
        rnd.shuffle(queue)
        with_memo = match_queue(queue, rules, now, memo=memo)
        fresh = match_queue(queue, rules, now)
        assert with_memo.proposals == fresh.proposals
        assert with_memo.blocked == fresh.blocked
        claimed = {ticket_id for p in fresh.proposals if rnd.random() < 0.8 for team in p.teams for ticket_id in team}
        queue = [t for t in queue if t.ticket_id not in claimed and rnd.random() > 0.02]
        for _ in range(rnd.choice([0, 0, 1, 3])):
            if arrivals:
                queue.append(arrivals.pop())
        now += rnd.choice([0.0, 0.5, 0.5, 40.0])
    return memo


def test_answers_with_the_memo_are_the_answers_without_it_over_many_ticks():
    recalled = 0
    for seed in range(40):
        rnd = random.Random(seed)
        rules = random_mode(rnd)
        coarse = seed % 2 == 1
        queue = [random_ticket(rnd, rules, f"t{n}", NOW - rnd.uniform(0, 600), coarse)
                 for n in range(rnd.randint(20, 250))]
        arrivals = [random_ticket(rnd, rules, f"n{n}", NOW + n * 0.1, coarse) for n in range(30)]
        recalled += ticks_agree(rules, queue, arrivals, rnd, ticks=8).recalled
    assert recalled > 1000  # the memo answered for many anchors: the comparison tested it


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_answers_with_the_memo_are_the_answers_without_it_on_small_queues(data):
    rules = data.draw(modes())
    queue = data.draw(queues(rules))
    arrivals = [QueuedTicket(f"n{t.ticket_id}", t.mmr, t.size, t.enqueued_at + 30, t.attributes, t.latencies,
                             t.region, t.roles) for t in data.draw(queues(rules))]
    ticks_agree(rules, queue, arrivals, random.Random(data.draw(st.integers(0, 1000))), ticks=5)


# --- what makes an answer stale ------------------------------------------------------------------

TANKS = MatchRules(2, 2, 100.0, 0.0, 100.0, roles=(("tank", 1), ("healer", 1)))


def tank(name: str, mmr: float, role: str = "tank") -> QueuedTicket:
    return QueuedTicket(name, mmr, 1, NOW - 60, roles=((role,),), players=(name,))


def test_a_ticket_kept_waiting_is_answered_from_the_memo_until_a_ticket_comes_near_it():
    # Two clusters of tanks, far apart, no healer: every tank waits for "roles", tick after tick.
    low = [tank(f"low{n}", 1000 + n / 2) for n in range(200)]
    high = [tank(f"high{n}", 3000 + n / 2) for n in range(200)]
    queue = low + high
    memo = FailureMemo()
    match_queue(queue, TANKS, NOW, memo=memo)
    again = match_queue(queue, TANKS, NOW, memo=memo)
    assert again.blocked == dict.fromkeys([t.ticket_id for t in queue], "roles")
    assert memo.recalled == 400
    # A healer in neither cluster's windows: no answer is walked again.
    queue.append(tank("h", 2050, "healer"))
    assert match_queue(queue, TANKS, NOW, memo=memo) == match_queue(queue, TANKS, NOW)
    assert memo.recalled == 400 + 400
    # One in the high cluster: the high tanks are walked again (and still wait), the low ones
    # are not. (The healers are alone in their windows: refused before any walk.)
    queue.append(tank("h2", 3050, "healer"))
    assert match_queue(queue, TANKS, NOW, memo=memo) == match_queue(queue, TANKS, NOW)
    assert memo.recalled == 800 + 200
    # A second one there: matches form, as without the memo.
    queue.append(tank("h3", 3051, "healer"))
    matching = match_queue(queue, TANKS, NOW, memo=memo)
    assert len(matching.proposals) == 1 and matching == match_queue(queue, TANKS, NOW)


def test_tickets_back_after_a_failed_claim_make_the_answers_near_them_stale():
    # Tick 1 matches two tanks and two healers, and the tanks left walk after the match took
    # them: "roles". The claim fails, so the four are queued again in tick 2, where those
    # answers are stale (the same four match again first, and the tanks left are walked again).
    matched = [tank("t1", 1500), tank("t2", 1501), tank("h1", 1502, "healer"), tank("h2", 1503, "healer")]
    late = [QueuedTicket(f"late{n}", 1504 + n, 1, NOW - 10, roles=(("tank",),), players=(f"late{n}",))
            for n in range(4)]
    memo = FailureMemo()
    first = match_queue(matched + late, TANKS, NOW, memo=memo)
    assert len(first.proposals) == 1 and first.blocked == dict.fromkeys([t.ticket_id for t in late], "roles")
    second = match_queue(matched + late, TANKS, NOW, memo=memo)
    assert second == first and memo.recalled == 0
    third = match_queue(late, TANKS, NOW, memo=memo)  # now claimed: the tanks left are walked again
    assert third.blocked == first.blocked and memo.recalled == 0
    match_queue(late, TANKS, NOW, memo=memo)  # and then answered from the memo
    assert memo.recalled == 4


def test_an_answer_given_after_a_match_in_its_reach_is_stale_when_the_claim_fails():
    # Tick 1: z, the oldest, matches t2, h1 and h2; x, walked after that, waits for "roles"
    # (its window, 60 wide, then holds tanks only). The claim fails, so in tick 2 the three are
    # back and z is cancelled: x is now the oldest of its partition, h1 and h2 are within its
    # window, and it matches. Its answer of tick 1 must not be reused, though nothing changed
    # in its reach between the ticks: the match changed it within tick 1, after x's turn.
    rules = MatchRules(2, 2, 0.0, 1.0, 1000.0, roles=(("tank", 1), ("healer", 1)),
                       rules=(Rule("same-build", "same", "build"),))

    def player(name, mmr, waited, role="tank", build="a"):
        return QueuedTicket(name, mmr, 1, NOW - waited, {"build": build}, roles=((role,),), players=(name,))

    z = player("z", 1400, 100)
    near = [player("t2", 1462, 10), player("h1", 1460, 10, "healer"), player("h2", 1461, 10, "healer")]
    x = player("x", 1500, 60)
    tanks = [player(f"x{n}", 1505 + n, 5) for n in range(4)]
    # Another partition, tanks only, so MMR buckets are narrow (~16 MMR): z's is not in x's reach.
    others = [player(f"o{n}", 1000 + n / 2, 300, build="b") for n in range(2000)]
    memo = FailureMemo()
    first = match_queue([z, *near, x, *tanks, *others], rules, NOW, memo=memo)
    assert [sorted(sum(p.teams, ())) for p in first.proposals] == [["h1", "h2", "t2", "z"]]
    assert first.blocked["x"] == "roles"
    queue = [*near, x, *tanks, *others]
    second = match_queue(queue, rules, NOW, memo=memo)
    assert second == match_queue(queue, rules, NOW)
    assert [sorted(sum(p.teams, ())) for p in second.proposals] == [["h1", "h2", "x", "x0"]]


def test_an_answer_is_not_reused_once_a_limit_expanded():
    # The MMR window stays the same (no growth); the latency limit, or the level gap, widens
    # after 20 s of waiting, and then the two tickets match.
    by_latency = MatchRules(1, 2, 100.0, 0.0, 100.0, latency=Latency(50.0, (Step(20.0, 100.0),)), regions=("eu",))
    by_level = MatchRules(1, 2, 100.0, 0.0, 100.0, rules=(Rule("level-gap", "distance", "level", 5.0,
                                                                (Step(20.0, 15.0),)),))
    for rules, blocked_by in ((by_latency, "latency"), (by_level, "level-gap")):
        pair = [QueuedTicket(f"p{n}", 1500 + n, 1, NOW - 10, {"level": 10.0 * n}, {"eu": 80.0}, players=(f"p{n}",))
                for n in range(2)]
        memo = FailureMemo()
        assert match_queue(pair, rules, NOW, memo=memo).blocked == dict.fromkeys(["p0", "p1"], blocked_by)
        assert match_queue(pair, rules, NOW + 5, memo=memo).blocked == dict.fromkeys(["p0", "p1"], blocked_by)
        assert memo.recalled == 2
        assert len(match_queue(pair, rules, NOW + 15, memo=memo).proposals) == 1


def test_an_answer_found_by_the_search_is_not_reused_once_the_window_widened():
    # A lobby of 3. The anchor's walk is ended by its cap (80 neighbours: 78 whose levels no
    # one shares, then c1 and c2, 60 MMR away on either side; g1 and g2, 80 away, are in the
    # window but past the cap). The search finds no lobby whose MMR spread (120) fits the
    # window (100): "mmr". Five seconds later the window is 150 and the lobby forms. An answer
    # the filters or the line-up gave would hold under any window covering the walk; one the
    # search gave does not.
    rules = MatchRules(3, 1, 100.0, 10.0, 1000.0, rules=(Rule("level-gap", "distance", "level", 5.0),))

    def ticket(name, mmr, level, enqueued_at):
        return QueuedTicket(name, mmr, 1, enqueued_at, {"level": level}, players=(name,))

    anchor = ticket("a", 1500.0, 10.0, NOW)
    pair = [ticket("c1", 1440.0, 10.0, NOW + 0.01), ticket("c2", 1560.0, 10.0, NOW + 0.01)]
    others = [ticket(f"f{k}", 1500.0 + (0.7 * (k // 2 + 1)) * (1 if k % 2 else -1), 50.0 + 6 * k, NOW + 0.01)
              for k in range(78)]
    beyond = [ticket("g1", 1420.0, 1000.0, NOW + 0.01), ticket("g2", 1580.0, 2000.0, NOW + 0.01)]
    queue = [anchor, *pair, *others, *beyond]
    memo = FailureMemo()
    first = match_queue(queue, rules, NOW + 0.01, memo=memo)
    assert first.proposals == [] and first.blocked["a"] == "mmr"
    later = match_queue(queue, rules, NOW + 5, memo=memo)
    assert later == match_queue(queue, rules, NOW + 5)
    assert [sorted(sum(p.teams, ())) for p in later.proposals] == [["a", "c1", "c2"]]


def test_an_answer_that_holds_for_wider_windows_is_not_reused_under_a_narrower_one():
    # Tanks 0.5 MMR apart: a tank's walk is ended by its cap (96 neighbours, ~24 MMR each way)
    # and it waits for "roles", an answer that holds under any window of 24 MMR or more. With
    # the clock set back (a window of 0.5 MMR: two neighbours), the same tanks wait for "mmr".
    rules = MatchRules(2, 2, 0.0, 10.0, 1000.0, roles=(("tank", 1), ("healer", 1)))
    queue = [QueuedTicket(f"t{n}", 1500 + n / 2, 1, NOW - 60, roles=(("tank",),), players=(f"t{n}",))
             for n in range(400)]
    memo = FailureMemo()
    assert set(match_queue(queue, rules, NOW, memo=memo).blocked.values()) == {"roles"}
    assert set(match_queue(queue, rules, NOW + 1, memo=memo).blocked.values()) == {"roles"}
    assert memo.recalled == 400  # the windows widened, the answers held
    earlier = match_queue(queue, rules, NOW - 59.95, memo=memo)
    assert earlier == match_queue(queue, rules, NOW - 59.95)
    assert "mmr" in earlier.blocked.values()


def test_a_wide_reach_is_kept_in_coarse_buckets_and_a_far_change_in_it_makes_it_stale():
    # Partition "b" is dense (0.01 MMR apart): the buckets are ~0.3 MMR wide. Partition "a"
    # holds ten tanks 10 MMR apart, whose walks end at the edge of their 200-MMR window: a
    # reach of ~1,300 buckets, kept as ~40 coarse ones. Two healers then come 150 MMR above
    # the first tank, far past the fine buckets around it but inside its coarse ones.
    rules = MatchRules(2, 2, 200.0, 0.0, 200.0, roles=(("tank", 1), ("healer", 1)),
                       rules=(Rule("same-build", "same", "build"),))

    def player(name, mmr, role="tank", build="a", enqueued_at=NOW - 60):
        return QueuedTicket(name, mmr, 1, enqueued_at, {"build": build}, roles=((role,),), players=(name,))

    queue = [player(f"t{n}", 1500.0 + 10 * n) for n in range(10)]
    queue += [player(f"o{n}", 1000.0 + n / 100, build="b") for n in range(2000)]
    memo = FailureMemo()
    assert set(match_queue(queue, rules, NOW, memo=memo).blocked.values()) == {"roles"}
    assert match_queue(queue, rules, NOW + 1, memo=memo).blocked["t0"] == "roles"
    assert memo.recalled == len(queue)  # the ten tanks' answers too
    queue += [player(f"h{n}", 1650.0 + n, "healer", enqueued_at=NOW + 1.5) for n in range(2)]
    later = match_queue(queue, rules, NOW + 2, memo=memo)
    assert later == match_queue(queue, rules, NOW + 2)
    assert [sorted(sum(p.teams, ())) for p in later.proposals] == [["h0", "h1", "t0", "t1"]]


def test_a_match_in_a_wide_reach_makes_the_answer_stale_when_its_claim_fails():
    # As above, buckets ~0.3 MMR wide. In the first tick a's match takes the two healers 150
    # MMR below b, inside b's coarse buckets, before b's turn: b waits ("roles"). The claim
    # fails and a cancels: the healers are back, and b's answer must be found again.
    rules = MatchRules(2, 2, 200.0, 0.0, 200.0, roles=(("tank", 1), ("healer", 1)),
                       rules=(Rule("same-build", "same", "build"),))

    def player(name, mmr, waited, role="tank", build="a"):
        return QueuedTicket(name, mmr, 1, NOW - waited, {"build": build}, roles=((role,),), players=(name,))

    a, b = player("a", 1300.0, 100), player("b", 1650.0, 90)
    queue = [b, player("t", 1660.0, 80), player("t1", 1310.0, 70),
             player("h0", 1495.0, 10, "healer"), player("h1", 1496.0, 10, "healer"),
             player("t2", 1700.0, 5), player("t3", 1720.0, 5)]
    queue += [player(f"o{n}", 1000.0 + n / 100, 1, build="b") for n in range(2000)]
    memo = FailureMemo()
    first = match_queue([a, *queue], rules, NOW, memo=memo)
    assert [sorted(sum(p.teams, ())) for p in first.proposals] == [["a", "h0", "h1", "t1"]]
    assert first.blocked["b"] == "roles"
    second = match_queue(queue, rules, NOW + 1, memo=memo)
    assert second == match_queue(queue, rules, NOW + 1)
    assert [sorted(sum(p.teams, ())) for p in second.proposals] == [["b", "h0", "h1", "t"]]


def test_arrivals_every_walk_turns_away_leave_the_answers_near_them_in_force():
    # Forty tanks wait for "roles". Three healers come among them, each turned away by one of
    # the tanks' filters (latency, maps, level): no tank is walked again. A fourth healer that
    # passes every filter makes the answers whose reach it falls in stale.
    rules = MatchRules(2, 2, 100.0, 0.0, 100.0, roles=(("tank", 1), ("healer", 1)),
                       rules=(Rule("maps", "overlap", "maps"), Rule("level-gap", "distance", "level", 5.0)),
                       latency=Latency(60.0), regions=("eu", "us"))

    def player(name, mmr, role="tank", home="eu", maps=("m1",), level=10.0):
        latencies = {"eu": 20.0, "us": 200.0} if home == "eu" else {"eu": 200.0, "us": 20.0}
        return QueuedTicket(name, mmr, 1, NOW - 60, {"maps": maps, "level": level}, latencies,
                            roles=((role,),), players=(name,))

    queue = [player(f"t{n}", 1500.0 + n) for n in range(40)]
    memo = FailureMemo()
    assert set(match_queue(queue, rules, NOW, memo=memo).blocked.values()) == {"roles"}
    queue += [player("by-latency", 1520.2, "healer", home="us"), player("by-maps", 1520.4, "healer", maps=("m2",)),
              player("by-level", 1520.6, "healer", level=30.0)]
    before = memo.recalled
    second = match_queue(queue, rules, NOW + 1, memo=memo)
    assert second == match_queue(queue, rules, NOW + 1)
    assert memo.recalled - before == 40
    queue.append(player("fits", 1520.8, "healer"))
    before = memo.recalled
    third = match_queue(queue, rules, NOW + 2, memo=memo)
    assert third == match_queue(queue, rules, NOW + 2)
    assert third.blocked["t0"] == "roles" and memo.recalled - before < 40


def test_an_answer_is_walked_again_once_arrivals_would_push_its_walk_past_its_cap():
    # A lobby of 3: a's window (100) holds f1 and f2 at its edges and 76 tickets nearer whose
    # levels fit no one: a's walk visits 78 of its cap of 80 and finds no lobby whose MMR
    # spread fits ("mmr"). Arrivals the level filter turns away come next to a, one a tick:
    # the first and second leave f2 in reach (80 visits), the third pushes it past the cap
    # (f1 alone: "level-gap"), which the memo must see, counting the arrivals it let pass.
    rules = MatchRules(3, 1, 100.0, 0.0, 100.0, rules=(Rule("level-gap", "distance", "level", 5.0),))

    def ticket(name, mmr, level, waited=50):
        return QueuedTicket(name, mmr, 1, NOW - waited, {"level": level}, players=(name,))

    queue = [ticket("a", 1500.0, 10.0, 100), ticket("f1", 1400.0, 10.0), ticket("f2", 1600.0, 10.0)]
    queue += [ticket(f"o{n}", 1450.0 + (n + 1) * (1 if n % 2 else -1) / 2, 100.0 + 10 * n) for n in range(76)]
    memo = FailureMemo()
    blocked = []
    for tick in range(4):
        if tick:
            queue.append(ticket(f"x{tick}", 1500.0 + tick / 10, 1000.0 + 10 * tick, 0))
        with_memo = match_queue(queue, rules, NOW + tick, memo=memo)
        assert with_memo == match_queue(queue, rules, NOW + tick)
        blocked.append(with_memo.blocked["a"])
    assert blocked == ["mmr", "mmr", "mmr", "level-gap"]


def tank_row(count: int, healer_at: float | None = None) -> list[QueuedTicket]:
    """Tanks 1 MMR apart from 1500, the first the oldest; a healer at `healer_at` if given."""
    row = [QueuedTicket(f"t{n}", 1500.0 + n, 1, NOW - 100 + n / 100, roles=(("tank",),), players=(f"t{n}",))
           for n in range(count)]
    if healer_at is not None:
        row.append(QueuedTicket("H", healer_at, 1, NOW - 50, roles=(("healer",),), players=("H",)))
    return row


def newcomer(name: str, mmr: float, role: str) -> QueuedTicket:
    return QueuedTicket(name, mmr, 1, NOW + 0.5, roles=((role,),), players=(name,))


def test_an_arrival_of_the_same_key_as_the_last_candidates_leaves_the_answers_in_force():
    # 2v2, one tank and one healer a team, no filters. Each tank's walk meets more tanks than
    # a match holds and ends at its window's edge: "roles". Another tank arrives among them:
    # a key the walks met enough of, and no tank is walked again. Two healers then arrive: a
    # key they lack, and the oldest tank's match forms.
    rules = MatchRules(2, 2, 100.0, 0.0, 100.0, roles=(("tank", 1), ("healer", 1)))
    queue = tank_row(40)
    memo = FailureMemo()
    assert set(match_queue(queue, rules, NOW, memo=memo).blocked.values()) == {"roles"}
    queue.append(newcomer("t-new", 1520.5, "tank"))
    second = match_queue(queue, rules, NOW + 1, memo=memo)
    assert second == match_queue(queue, rules, NOW + 1)
    assert memo.recalled == 40
    queue += [newcomer("h1", 1520.2, "healer"), newcomer("h2", 1520.3, "healer")]
    third = match_queue(queue, rules, NOW + 2, memo=memo)
    assert third == match_queue(queue, rules, NOW + 2)
    assert [sorted(sum(p.teams, ())) for p in third.proposals] == [["h1", "h2", "t0", "t1"]]


FIVE_ROLES = MatchRules(5, 2, 1000.0, 0.0, 1000.0, roles=tuple((r, 1) for r in "abcde"))


def offers_row() -> list[QueuedTicket]:
    """Anchor "a0" (offers a) and 56 solos 1 MMR apart from 1501 offering subsets of "abcd":
    each key no more often than a 5v5 of one slot per role holds (twice its roles), so every
    one counts toward the walk's cap of candidates (56) and the cap ends a0's walk. Nobody
    offers e: no line-up ("roles"). The last two offer b and c (room for two more)."""
    keys = (["a", "b", "c", "d"] + ["ab", "ac", "ad", "bd", "cd"] + ["abc", "abd", "acd", "bcd"])
    offers = []
    for key in keys:
        offers += [key] * (2 * len(key) - (key == "a"))
    offers += ["abcd"] * (54 - len(offers)) + ["bc", "bc"]
    row = [QueuedTicket("a0", 1500.0, 1, NOW - 100, roles=(("a",),), players=("a0",))]
    row += [QueuedTicket(f"s{n:02d}", 1501.0 + n, 1, NOW - 50, roles=(tuple(offer),), players=(f"s{n:02d}",))
            for n, offer in enumerate(offers)]
    return row


def walked_in(queue, now, memo, monkeypatch) -> tuple[set, object]:
    walked: set = set()
    anchor = constrained._Constrained._anchor

    def recorded(self, i, *args):
        walked.add(self.ids[i])
        return anchor(self, i, *args)

    monkeypatch.setattr(constrained._Constrained, "_anchor", recorded)
    try:
        matching = match_queue(queue, FIVE_ROLES, now, memo=memo)
    finally:
        monkeypatch.setattr(constrained._Constrained, "_anchor", anchor)
    return walked, matching


@pytest.mark.parametrize("offers, kept", [
    (["bc"], True), (["bc", "bc"], True),  # the last candidates' key, no more than in a row
    (["bc", "bc", "bc"], False),  # one more: the third bc would take the place of an abcd
    (["ab"], True), (["ab", "ab"], True),  # a key the walk met as many of as a match holds
    (["ab", "bc"], False),  # both kinds at once: walked again
    (["e"], False), (["bd", "e", "e"], False),  # e: a key it lacked (two of them make the match)
])
def test_which_arrivals_that_pass_the_filters_leave_an_answer_of_the_line_up_check(offers, kept, monkeypatch):
    queue = offers_row()
    memo = FailureMemo()
    first = match_queue(queue, FIVE_ROLES, NOW, memo=memo)
    assert first.blocked["a0"] == "roles" and not first.proposals
    queue += [QueuedTicket(f"x{k}", 1500.5 + k / 10, 1, NOW + 0.5, roles=(tuple(offer),), players=(f"x{k}",))
              for k, offer in enumerate(offers)]
    walked, later = walked_in(queue, NOW + 1, memo, monkeypatch)
    assert later == match_queue(queue, FIVE_ROLES, NOW + 1)
    assert ("a0" not in walked) == kept


def test_the_arrivals_that_took_the_last_candidates_places_are_counted_over_ticks():
    # a, a healer among 31 healers, has the tank T (1532) as its last candidate: "roles". A
    # tank arrives in the next tick and one more in the one after, each level 5: T (level
    # 15) fits a (10) but neither of them (a level gap of 5 at most), so no other match forms
    # before a's. The first takes T's place (one tank still); the second makes two, and a's
    # match forms, which the memo must see though each tick brought one arrival of T's key.
    rules = MatchRules(2, 2, 100.0, 0.0, 100.0, roles=(("tank", 1), ("healer", 1)),
                       rules=(Rule("level-gap", "distance", "level", 5.0),))

    def ticket(name, mmr, role, level, enqueued_at):
        return QueuedTicket(name, mmr, 1, enqueued_at, {"level": level}, roles=((role,),), players=(name,))

    queue = [ticket("a", 1500.0, "healer", 10.0, NOW - 100), ticket("T", 1532.0, "tank", 15.0, NOW - 50)]
    queue += [ticket(f"h{n}", 1501.0 + n, "healer", 10.0, NOW - 90 + n / 100) for n in range(31)]
    memo = FailureMemo()
    proposals = []
    for tick in range(3):
        if tick:
            queue.append(ticket(f"x{tick}", 1509.5 + tick / 10, "tank", 5.0, NOW + tick - 0.5))
        with_memo = match_queue(queue, rules, NOW + tick, memo=memo)
        assert with_memo == match_queue(queue, rules, NOW + tick)
        proposals.append([sorted(sum(p.teams, ())) for p in with_memo.proposals])
    assert proposals[:2] == [[], []]
    assert proposals[2] and "a" in proposals[2][0]


def test_an_arrival_that_passes_a_walk_ended_by_its_window_makes_the_answer_stale():
    # a's window (40) holds two tanks and the healer H: "roles", and its walk ended at the
    # window's edge, not its cap: a healer arriving is a candidate more, none dropped, and
    # a's match forms.
    rules = MatchRules(2, 2, 40.0, 0.0, 40.0, roles=(("tank", 1), ("healer", 1)))
    queue = [QueuedTicket("a", 1500.0, 1, NOW - 100, roles=(("tank",),), players=("a",)),
             QueuedTicket("t1", 1510.0, 1, NOW - 90, roles=(("tank",),), players=("t1",)),
             QueuedTicket("t2", 1525.0, 1, NOW - 80, roles=(("tank",),), players=("t2",)),
             QueuedTicket("H", 1540.0, 1, NOW - 70, roles=(("healer",),), players=("H",))]
    memo = FailureMemo()
    assert match_queue(queue, rules, NOW, memo=memo).blocked["a"] == "roles"
    queue.append(newcomer("h", 1520.0, "healer"))
    later = match_queue(queue, rules, NOW + 1, memo=memo)
    assert later == match_queue(queue, rules, NOW + 1)
    assert [sorted(sum(p.teams, ())) for p in later.proposals] == [["H", "a", "h", "t1"]]


def test_tied_mmrs_read_in_another_order_give_the_same_answers():
    # 72 tickets of one MMR, a level rule only "a" and "b" meet together. Walks are capped (64
    # neighbours): read in one order, they are too far apart among the ties to meet; the
    # matcher orders ties by ticket id, so the order the queue was read in does not matter,
    # and an answer reused from the tick before is the answer of this one.
    rules = MatchRules(1, 2, 100.0, 0.0, 100.0, rules=(Rule("level-gap", "distance", "level", 1.0),))
    queue = [QueuedTicket(f"x{n:02d}", 1500.0, 1, NOW - 10, {"level": 100.0 + 10 * n}, players=(f"x{n}",))
             for n in range(70)]
    pair = [QueuedTicket(name, 1500.0, 1, NOW - 10, {"level": 5.0}, players=(name,)) for name in ("a", "b")]
    memo = FailureMemo()
    first = match_queue([pair[0], *queue, pair[1]], rules, NOW, memo=memo)
    second = match_queue([*queue, *pair], rules, NOW, memo=memo)
    assert first == second == match_queue([*pair, *queue], rules, NOW)


def test_the_matching_does_not_depend_on_the_order_the_queue_is_read_in():
    # Random modes, queues of up to 250 tickets whose MMRs tie often, read in two orders.
    for seed in range(30):
        rnd = random.Random(seed)
        rules = random_mode(rnd)
        queue = [random_ticket(rnd, rules, f"t{n}", NOW - rnd.uniform(0, 600), coarse=True)
                 for n in range(rnd.randint(20, 250))]
        shuffled = list(queue)
        rnd.shuffle(shuffled)
        assert match_queue(shuffled, rules, NOW) == match_queue(queue, rules, NOW)


def test_crafted_mmrs_do_not_break_the_buckets():
    # Two MMRs a denormal apart make the spacing tiny; a queue of one MMR then has none; MMRs
    # all tiny make the bucket width tiny while walks still reach a window of 100 MMR.
    level = MatchRules(3, 1, 100.0, 0.0, 100.0, rules=(Rule("level-gap", "distance", "level", 5.0),))
    tiny = [QueuedTicket(name, mmr, 1, NOW - 5, {"level": lv}, players=(name,))
            for name, mmr, lv in (("l", 0.0, 1.0), ("o", 0.0, 50.0), ("c", 1e-310, 1.0))]
    memo = FailureMemo()
    for rules, queue in ((TANKS, [tank("a", 0.0), tank("b", 5e-324), tank("c", 5e-324)]),
                         (TANKS, [tank(f"t{n}", 1500.0) for n in range(10)]),
                         (TANKS, [tank("big", 100000.0), tank("small", 0.0)] + [tank(f"u{n}", 1500.0) for n in range(10)]),
                         (level, tiny),
                         (TANKS, [tank(n, mmr) for n, mmr in (("w", 0.0), ("x", 0.0), ("y", 1e-310), ("z", 1e-310))])):
        for tick in range(2):
            assert match_queue(queue, rules, NOW + tick, memo=memo) == match_queue(queue, rules, NOW + tick)


def test_the_changes_the_memo_holds_stay_bounded_by_the_queue():
    # Tickets refused before any walk (too few players share their `same` value) and a queue
    # that churns every tick: the changes held are pruned to what the queue needs.
    rules = MatchRules(2, 2, 100.0, 0.0, 100.0, roles=(("tank", 1), ("healer", 1)),
                       rules=(Rule("same-build", "same", "build"),))
    rnd = random.Random(3)

    def waiting(name, build):
        return QueuedTicket(name, rnd.gauss(1500, 300), 1, NOW - 60, {"build": build}, roles=(("tank",),),
                            players=(name,))

    lonely = [waiting(f"lonely{n}", f"b{n}") for n in range(200)]  # alone with their build
    churn = [waiting(f"c{n}", "common") for n in range(400)]
    memo = FailureMemo()
    for tick in range(150):
        churn = churn[20:] + [waiting(f"c{tick}.{n}", "common") for n in range(20)]
        match_queue(lonely + churn, rules, NOW, memo=memo)
        assert memo.buckets <= 4 * 600 + 4096
        assert len(memo) <= 600


def test_an_answer_refused_before_its_recall_does_not_keep_every_change():
    # "pin" waits on its level; then its partner goes, and from then on it is refused by its
    # `same` value before any walk, so its answer is never given again. Tickets of new
    # `same` values churn through every tick: the changes held stay bounded all the same.
    rules = MatchRules(1, 2, 100.0, 0.0, 100.0, rules=(Rule("same-lobby", "same", "lobby"),
                                                       Rule("level-gap", "distance", "level", 1.0)))

    def ticket(name, mmr, lobby, level=0.0):
        return QueuedTicket(name, mmr, 1, NOW - 10, {"lobby": lobby, "level": level}, players=(name,))

    pin, partner = ticket("pin", 1500, "pinned"), ticket("partner", 1501, "pinned", level=50.0)

    def churn(tick):
        return [ticket(f"c{tick}.{k}", 10 + 250 * k, f"lobby{tick}.{k}") for k in range(40)]

    memo = FailureMemo()
    match_queue([pin, partner, *churn(0)], rules, NOW, memo=memo)
    assert len(memo) >= 1
    for tick in range(1, 150):
        match_queue([pin, *churn(tick)], rules, NOW, memo=memo)
        assert memo.buckets <= 4 * 41 + 4096 + 80


def _edge_ticket(name, mmr, waited, build, level=0.0):
    return QueuedTicket(name, mmr, 1, NOW - waited, {"build": build, "level": level}, players=(name,))


# Tickets of another build that set the memo's bucket width for the edge tests below.
_EDGE_OTHERS = [_edge_ticket(f"o{n}", 20.0 * n / 510, 0.0, "b") for n in range(510)]


def _edge_width() -> float:
    probe = FailureMemo()
    match_queue(_EDGE_OTHERS + [_edge_ticket("A", 5.0, 1000.0, "a"), _edge_ticket("u", 5.5, 0.0, "a", 50.0)],
                MatchRules(1, 2, 1e-6, 1.0, 1.0, rules=(Rule("same-build", "same", "build"),)), NOW, memo=probe)
    return probe._width


def _edge_arrival_matches_the_anchor(m, x, w, u_mmr, width=None):
    """A (MMR m, window w capped) waits on "level-gap" beside u (at u_mmr, too far in level);
    then x arrives at MMR x, within A's window: the memo must not keep A's answer, and A
    matches x. With `width`: x is checked to sit in the last bucket of A's reach, in force."""
    rules = MatchRules(1, 2, 1e-6, 1.0, w, rules=(Rule("same-build", "same", "build"),
                                                  Rule("level-gap", "distance", "level", 1.0)))
    queue = _EDGE_OTHERS + [_edge_ticket("A", m, 1000.0, "a"), _edge_ticket("u", u_mmr, 0.0, "a", 50.0)]
    memo = FailureMemo()
    assert match_queue(queue, rules, NOW, memo=memo).blocked["A"] == "level-gap"
    if width is not None:
        assert "A" in memo.in_force
        assert memo._width == width and floor(x / width) == memo._answers["A"].last  # x: in the last bucket
    queue.append(_edge_ticket("x", x, 0.0, "a"))
    assert match_queue(queue, rules, NOW, memo=memo) == match_queue(queue, rules, NOW)
    assert [sorted(sum(p.teams, ())) for p in match_queue(queue, rules, NOW).proposals] == [["A", "x"]]


def test_a_ticket_at_the_edge_of_a_reach_makes_the_answer_stale():
    # The reach's edges are the anchor's MMR minus and plus a distance, rounded: a ticket the
    # walk would read can sit just past the edge's bucket. Here is such a ticket, x, found for
    # the memo's bucket width: the anchor A waits ("level-gap"), then x comes, within A's
    # window, and matches A.
    width = _edge_width()
    rnd = random.Random(1)
    found = None
    for k in range(1, 200):
        x = k * width
        while floor(x / width) >= k:
            x = nextafter(x, 0.0)
        for _ in range(2000):
            m = rnd.uniform(2 * x, 19.0)
            w = m - x
            if floor((m - w) / width) >= k and m - x <= w and m + 0.5 < 20:
                found = (m, x, w)
                break
        if found:
            break
    m, x, w = found
    _edge_arrival_matches_the_anchor(m, x, w, m + w / 2)


def test_a_ticket_at_the_high_edge_of_a_reach_makes_the_answer_in_force_stale():
    # The mirror of the test above: x sits just past the bucket of the anchor's MMR plus its
    # reach, rounded down, in the bucket of padding above it. A's answer is in force (its
    # window is capped: it holds until something changes in its reach); x's arrival must end
    # that.
    width = _edge_width()
    rnd = random.Random(1)
    found = None
    for k in range(2, 200):
        x = k * width
        while floor(x / width) < k:
            x = nextafter(x, 100.0)
        for _ in range(5000):
            m = rnd.uniform(0.5, x - 0.1)
            w = x - m
            # u (at m - w / 2) and A among the others' middle 80%, as in the probe: the same width.
            if floor((m + w) / width) < k and x - m <= w and m - w / 2 > 2.1:
                found = (m, x, w)
                break
        if found:
            break
    m, x, w = found
    _edge_arrival_matches_the_anchor(m, x, w, m - w / 2, width)


def test_an_answer_in_force_yields_to_the_queue_running_short_of_players():
    # A lobby of 20 (window 10, not growing). b and c, 500 MMR below the rest, wait: "mmr",
    # in force. Then x joins the 19 around a, a's lobby forms, and two players are left: at
    # b's turn the queue no longer holds a match ("players"), far from anything that changed
    # in b's reach.
    rules = MatchRules(20, 1, 10.0, 0.0, 10.0)

    def ticket(name, mmr, waited):
        return QueuedTicket(name, mmr, 1, NOW - waited, players=(name,))

    queue = [ticket("a", 0.0, 100)] + [ticket(f"o{n}", (n + 1) / 10, 50) for n in range(18)]
    queue += [ticket("b", -500.0, 10), ticket("c", -495.0, 10)]
    memo = FailureMemo()
    assert match_queue(queue, rules, NOW, memo=memo).blocked["b"] == "mmr"
    assert "b" in memo.in_force
    queue.append(ticket("x", 0.95, 0))
    later = match_queue(queue, rules, NOW + 1, memo=memo)
    assert later == match_queue(queue, rules, NOW + 1)
    assert len(later.proposals) == 1 and later.blocked["b"] == "players"


# Two teams of a tank and a healer, one build per match (the two tests below).
_TANK_AND_HEALER = MatchRules(2, 2, 100.0, 0.0, 100.0, roles=(("tank", 1), ("healer", 1)),
                              rules=(Rule("same-build", "same", "build"),))


def _build_player(name, mmr, role, waited, build="a"):
    return QueuedTicket(name, mmr, 1, NOW - waited, {"build": build}, roles=((role,),), players=(name,))


def test_an_answer_in_force_yields_to_its_partition_running_short_of_players():
    # As above with a `same` rule: a's match takes four of the six players of partition "a",
    # none within b's reach; at b's turn the partition no longer holds a match ("same-build").
    rules, player = _TANK_AND_HEALER, _build_player

    queue = [player("a", 1000.0, "tank", 100), player("h1", 1010.0, "healer", 90),
             player("b", 1500.0, "tank", 80), player("t5", 1510.0, "tank", 70)]
    queue += [player(f"o{n}", 1000.0 + n / 100, "tank", 1, build="b") for n in range(2000)]  # narrow buckets
    memo = FailureMemo()
    assert match_queue(queue, rules, NOW, memo=memo).blocked["b"] == "mmr"
    assert "b" in memo.in_force
    queue += [player("t4", 990.0, "tank", 0), player("h2", 995.0, "healer", 0)]
    later = match_queue(queue, rules, NOW + 1, memo=memo)
    assert later == match_queue(queue, rules, NOW + 1)
    assert len(later.proposals) == 1 and later.blocked["b"] == "same-build"


def test_an_answer_in_force_yields_to_a_match_in_its_reach_in_the_same_tick():
    # b's answer ("roles": b, t3, t6 and h1 in its window) is in force. Two players arrive
    # beyond its reach, next to a, and a's match takes h1: at b's turn its window holds three
    # players ("mmr"), though nothing in its reach changed between the ticks. (Tanks far
    # above keep the partition large enough for a match.)
    rules, player = _TANK_AND_HEALER, _build_player

    queue = [player("a", 1090.0, "tank", 100), player("b", 1200.0, "tank", 90), player("t3", 1210.0, "tank", 80),
             player("t6", 1220.0, "tank", 80), player("h1", 1101.0, "healer", 70)]
    queue += [player(f"far{n}", 3000.0 + n, "tank", 60) for n in range(4)]
    queue += [player(f"o{n}", 1000.0 + n / 100, "tank", 1, build="b") for n in range(2000)]  # narrow buckets
    memo = FailureMemo()
    assert match_queue(queue, rules, NOW, memo=memo).blocked["b"] == "roles"
    assert "b" in memo.in_force
    queue += [player("t4", 1080.0, "tank", 0), player("h2", 1070.0, "healer", 0)]
    later = match_queue(queue, rules, NOW + 1, memo=memo)
    assert later == match_queue(queue, rules, NOW + 1)
    assert [sorted(sum(p.teams, ())) for p in later.proposals] == [["a", "h1", "h2", "t4"]]
    assert later.blocked["b"] == "mmr"


def test_an_answer_leaves_force_at_the_clock_its_limits_change_by_the_ticks_own_test():
    # enqueued_at + 10 s rounds to just above the clock at which now - enqueued_at reaches
    # 10 s: at that clock the latency limit has widened and a and b match.
    rules = MatchRules(1, 2, 100.0, 0.0, 100.0, latency=Latency(50.0, (Step(10.0, 200.0),)), regions=("eu", "us"))
    assert 10.274 - 0.274 == 10.0 and 0.274 + 10.0 > 10.274

    def ticket(name, mmr, latencies):
        return QueuedTicket(name, mmr, 1, 0.274, {}, latencies, None, (), (name,))

    queue = [ticket("a", 1500.0, {"eu": 20.0, "us": 150.0}), ticket("b", 1550.0, {"eu": 150.0, "us": 20.0})]
    memo = FailureMemo()
    assert set(match_queue(queue, rules, 5.0, memo=memo).blocked.values()) == {"latency"}
    later = match_queue(queue, rules, 10.274, memo=memo)
    assert later == match_queue(queue, rules, 10.274) and len(later.proposals) == 1


def test_partitions_that_come_and_go_leave_nothing_behind():
    # Each tick a new `same` partition of two tickets that cannot match comes and goes, beside
    # a partition whose answers stay in force.
    rules = MatchRules(1, 2, 100.0, 0.0, 100.0, rules=(Rule("same-lobby", "same", "lobby"),
                                                       Rule("level-gap", "distance", "level", 1.0)))

    def ticket(name, mmr, lobby, level):
        return QueuedTicket(name, mmr, 1, 0.0, {"lobby": lobby, "level": level}, players=(name,))

    core = [ticket(f"c{n}", 1000.0 + n, "core", 5.0 * n) for n in range(40)]
    memo = FailureMemo()
    for tick in range(300):
        lobby = f"L{tick}"
        match_queue(core + [ticket(f"{lobby}a", 1000.0, lobby, 0.0), ticket(f"{lobby}b", 1010.0, lobby, 50.0)],
                    rules, 100.0 + tick, memo=memo)
        assert len({partition for _, _, partition in memo._starts}) <= 2 and len(memo) <= 42
    assert len(memo.in_force) >= 40


def test_the_memo_holds_one_answer_per_ticket_still_waiting():
    rnd = random.Random(7)
    memo = FailureMemo()
    queue = [tank(f"t{n}", rnd.gauss(1500, 300)) for n in range(500)]
    for round_ in range(5):
        match_queue(queue, TANKS, NOW, memo=memo)
        assert len(memo) <= len(queue)
        queue = queue[100:] + [tank(f"r{round_}.{n}", rnd.gauss(1500, 300)) for n in range(50)]
    match_queue([], TANKS, NOW, memo=memo)
    assert len(memo) == 0


# The index of answers in force, through the memo's own calls: a queue of MMRs 0..99,999
# with a spacing of 1 makes buckets of 32 MMR (_TICKETS_PER_BUCKET), and an answer that read
# [low, high] reaches the fine buckets floor(low / 32) - 1 to floor(high / 32) + 1; past 128
# of them, coarse buckets of 32 fine ones. A ticket in fine bucket b sits at MMR 32 b + 16.
_WIDTH = 32.0


def _indexed_memo(now: float = 100.0) -> FailureMemo:
    memo = FailureMemo()
    memo.begin(["q0", "q1"], None, [0.0, 99_999.0], 1.0, now)
    assert memo._width == _WIDTH
    return memo


def _reach(first: int, last: int) -> tuple[float, float]:
    """The [low, high] a walk read for its answer to reach fine buckets first..last."""
    return (first + 1) * _WIDTH + 1, (last - 1) * _WIDTH + 1


def _holds(first: int, last: int, bucket: int) -> bool:
    """Does the reach of fine buckets first..last hold fine bucket `bucket`, as the memo
    keeps it (in coarse buckets past 128)?"""
    if last - first >= 128:
        first, last, bucket = first // 32, last // 32, bucket // 32
    return first <= bucket <= last


def _remember(memo, ticket_id, first, last):
    memo.remember(ticket_id, (), 10.0, (), *_reach(first, last), "roles", window_fixed=True)


_SPANS = [2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 1000, 4000]


def test_a_match_takes_out_of_force_exactly_the_answers_whose_reach_holds_it():
    for span in _SPANS:
        first = 1000
        last = first + span
        for bucket in sorted({first - 33, first - 1, first, first + 1, (first + last) // 2, last - 1, last,
                              last + 1, last + 33}):
            memo = _indexed_memo()
            # Answers of every span just beside it (but for coarse buckets), above and below,
            # so the lookup reads other entries of every class too.
            for other in _SPANS:
                _remember(memo, f"o{other}", bucket + 40, bucket + 40 + other)
                _remember(memo, f"u{other}", bucket - 40 - other, bucket - 40)
            _remember(memo, "a", first, last)
            assert "a" in memo.in_force
            memo.matched((), [bucket * _WIDTH + 16])
            assert ("a" not in memo.in_force) == _holds(first, last, bucket), (span, bucket - first)
            assert all(f"{side}{other}" in memo.in_force for other in _SPANS for side in "ou")


def test_an_arrival_takes_out_of_force_exactly_the_answers_whose_reach_holds_it():
    for span in _SPANS:
        memo = _indexed_memo()
        first = 1000
        last = first + span
        buckets = [first - 2, first - 1, first, last, last + 1, last + 2]
        for n in range(len(buckets)):
            _remember(memo, f"a{n}", first, last)
        # One arrival a tick, at another bucket each time; the answer of each tick is given
        # again (in force) before the next.
        queue = ["q0", "q1"]
        mmrs = [0.0, 99_999.0]
        for n, bucket in enumerate(buckets):
            memo.begin(queue + [f"new{n}"], None, mmrs + [bucket * _WIDTH + 16], 1.0, 100.0 + n)
            for k in range(len(buckets)):
                if k != n:
                    _remember(memo, f"a{k}", first, last)
            assert ("a%d" % n not in memo.in_force) == _holds(first, last, bucket), (span, bucket - first)
            _remember(memo, f"a{n}", first, last)
            queue.append(f"new{n}")
            mmrs.append(bucket * _WIDTH + 16)


def test_an_answer_given_after_matches_in_this_tick_is_in_force_only_outside_them():
    for span in _SPANS:
        first = 1000
        last = first + span
        for bucket in (first - 1, first, last, last + 1):
            memo = _indexed_memo()
            # Matches below and above it first, in an order other than the buckets'.
            for mmr in ((last + 5000) * _WIDTH, bucket * _WIDTH + 16, (first - 5000) * _WIDTH):
                memo.matched((), [mmr])
            _remember(memo, "a", first, last)
            assert ("a" not in memo.in_force) == _holds(first, last, bucket), (span, bucket - first)


def test_the_index_rebuilt_from_the_answers_in_force_still_finds_them():
    memo = _indexed_memo(now=0.0)
    for n in range(1500):  # answers whose limits change at a wait of 5 s: out of force then
        memo.remember(f"brief{n}", (), 10.0, (), *_reach(10 + n, 14 + n), "roles", enqueued_at=0.0, next_step=5.0,
                      window_fixed=True)
    for n in range(50):
        _remember(memo, f"lasting{n}", 2000 + 10 * n, 2004 + 10 * n)
    assert len(memo.in_force) == 1550
    memo.begin(["q0", "q1"], None, [0.0, 99_999.0], 1.0, 10.0)
    assert len(memo.in_force) == 50 and memo._indexed <= 50  # rebuilt: the brief ones' entries gone
    memo.matched((), [2012 * _WIDTH])
    assert "lasting1" not in memo.in_force and len(memo.in_force) == 49
