"""Match rules through the public API: attributes, roles, latency regions, lobbies and
explanations, on the real store and redis-server, matched by the real Ticker.

Tickets are created over HTTP, a tick runs as the scheduler would run it, and what the players
and the game server read back is checked: the region the latencies chose, every player's
role, the value an overlap rule chose, the roster, and `matching.blocked_by` for tickets a
rule keeps waiting.
"""
from __future__ import annotations

import pytest

from mmserver.config import Config, ModeConfig, ServersConfig
from mmserver.matchmaking.rules import Latency, Rule, Step
from mmserver.shutdown import Shutdown
from mmserver.ticker import Ticker
from tests.api.conftest import REGIONS, SERVER_TOKEN, bearer

SERVER_AUTH = bearer(SERVER_TOKEN)

RANKED = ModeConfig(
    name="ranked", team_size=2, teams=2, accept_timeout_s=0, mmr_window=200, mmr_window_growth_per_s=0,
    mmr_window_max=200,
    attributes=(("build", "string"), ("maps", "string_list"), ("level", "number")),
    roles=(("tank", 1), ("dps", 1)),
    rules=(Rule("same-build", "same", "build"), Rule("common-map", "overlap", "maps"),
           Rule("level-gap", "distance", "level", max=10.0, expand=(Step(20.0, 30.0),))),
    latency=Latency(max_ms=80.0, expand=(Step(15.0, 150.0),)),
)
ROYALE = ModeConfig(name="royale", team_size=4, min_team_size=2, teams=1, fill_wait_s=3600,
                    accept_timeout_s=0, mmr_window=5000, mmr_window_max=5000)
MODES = {"ranked": RANKED, "royale": ROYALE, "duel": ModeConfig(name="duel")}


@pytest.fixture
def config() -> Config:
    return Config(modes=MODES, servers=ServersConfig(token=SERVER_TOKEN), regions=REGIONS, max_longpolls=4,
                  http_threads=8, max_body_bytes=8192)


@pytest.fixture
def tick(store, config):
    ticker = Ticker(store, config.modes, shutdown=Shutdown(), regions=config.regions, mode_lock_s=0)
    return ticker.tick


def ranked(client, player, *, build="tank-heavy", maps=("dust2", "nuke"), level=10, latencies=None,
           roles=("tank", "dps"), mmr=1500, **extra):
    body = {"player_id": player, "mode": "ranked", "mmr": mmr,
            "attributes": {"build": build, "maps": list(maps), "level": level},
            "latencies": latencies if latencies is not None else {"eu": 30, "us": 90},
            "roles": list(roles), **extra}
    result = client.simulate_post("/v1/tickets", json=body)
    assert result.status_code == 201, result.text
    return result.json, bearer(result.json["token"])


def read(client, ticket, auth):
    result = client.simulate_get(f"/v1/tickets/{ticket['ticket_id']}", headers=auth)
    assert result.status_code == 200, result.text
    return result.json


def test_a_ranked_match_gets_its_region_roles_common_map_and_roster(client, store, tick):
    tickets = [
        ranked(client, "a", roles=["tank"], maps=["nuke", "dust2"], latencies={"eu": 60, "us": 20}),
        ranked(client, "b", roles=["tank"], maps=["inferno", "nuke"], latencies={"eu": 70, "us": 40}),
        ranked(client, "c", roles=["dps"], maps=["nuke"], latencies={"eu": 10, "us": 50}),
        ranked(client, "d", roles=["dps", "tank"], maps=["nuke", "mirage"], latencies={"eu": 20, "us": 30}),
    ]
    assert tick().matches_claimed == 1
    server = client.simulate_put("/v1/servers/gs-us", json={"address": "10.0.0.9:7777", "region": "us"},
                                 headers=SERVER_AUTH)
    assert server.status_code == 200
    client.simulate_put("/v1/servers/gs-eu", json={"address": "10.0.0.8:7777", "region": "eu"},
                        headers=SERVER_AUTH)
    assert store.allocate(10)[0] == 1
    views = [read(client, t, auth) for t, auth in tickets]
    assignment = views[0]["assignment"]
    # Worst latency: eu 70 (b), us 50 (c): us is the lowest worst latency under 80 ms.
    assert assignment["region"] == "us"
    assert assignment["server"] == "10.0.0.9:7777"
    assert assignment["attributes"] == {"maps": "nuke"}
    roles = assignment["roles"]
    assert roles["a"] == "tank" and roles["b"] == "tank" and roles["c"] == "dps" and roles["d"] == "dps"
    for team in assignment["teams"]:
        assert sorted(roles[p] for p in team) == ["dps", "tank"]
    assert all(v["assignment"]["match_id"] == assignment["match_id"] for v in views)

    roster = client.simulate_get(f"/v1/matches/{assignment['match_id']}", headers=SERVER_AUTH)
    assert roster.status_code == 200, roster.text
    assert roster.json["region"] == "us"
    assert roster.json["attributes"] == {"maps": "nuke"}
    players = {p["player_id"]: p for team in roster.json["teams"] for p in team["players"]}
    assert {pid: p["role"] for pid, p in players.items()} == roles
    assert players["b"]["attributes"] == {"build": "tank-heavy", "maps": ["inferno", "nuke"], "level": 10}


def test_a_fixed_region_in_a_latency_mode_plays_only_there(client, store, tick):
    for player in "abc":
        ranked(client, player, roles=["tank", "dps"], latencies={"eu": 10, "us": 60})
    fixed, fixed_auth = ranked(client, "d", roles=["tank", "dps"], latencies=None, region="us")
    assert fixed["region"] == "us"
    assert tick().matches_claimed == 1
    client.simulate_put("/v1/servers/gs-eu", json={"address": "10.0.0.8:7777", "region": "eu"},
                        headers=SERVER_AUTH)
    client.simulate_put("/v1/servers/gs-us", json={"address": "10.0.0.9:7777", "region": "us"},
                        headers=SERVER_AUTH)
    assert store.allocate(10)[0] == 1
    # eu is better for three of them, but d plays only in us (and us is under 80 ms for all).
    assignment = read(client, fixed, fixed_auth)["assignment"]
    assert assignment["region"] == "us" and assignment["server"] == "10.0.0.9:7777"


def test_each_kind_of_rule_explains_a_waiting_ticket(client, tick):
    # Two tickets that could pair apart from one rule each; a ranked match needs four players,
    # so four of a kind are queued and one of them differs by exactly one rule.
    def queue_three(prefix, **kw):
        return [ranked(client, f"{prefix}{i}", roles=["tank", "dps"], **kw) for i in range(3)]

    cases = {
        "same-build": dict(build="glass-cannon"),
        "common-map": dict(maps=["vertigo"]),
        "level-gap": dict(level=60),
        "latency": dict(latencies={"eu": 200, "us": 300}),
        "mmr": dict(mmr=4000),
    }
    queue_three("x")
    odd = {rule: ranked(client, f"odd-{rule}", roles=["tank", "dps"], **kw) for rule, kw in cases.items()}
    tick()
    for rule, (ticket, auth) in odd.items():
        view = read(client, ticket, auth)
        assert view["status"] == "queued", (rule, view)
        matching = view["matching"]
        assert matching["blocked_by"] == rule, (rule, matching)
        assert matching["waited_s"] >= 0
        assert matching["limits"]["latency_ms"] == 80
        assert matching["limits"]["rules"] == {"level-gap": 10}
        assert matching["limits"]["mmr_window"] == 200


def test_roles_that_cannot_be_filled_explain_themselves(client, tick):
    tickets = [ranked(client, f"t{i}", roles=["tank"]) for i in range(4)]
    tick()
    assert all(read(client, t, auth)["matching"]["blocked_by"] == "roles" for t, auth in tickets)


def test_too_few_players_is_players(client, tick):
    ticket, auth = ranked(client, "alone")
    tick()
    assert read(client, ticket, auth)["matching"]["blocked_by"] == "players"


def test_the_status_counts_what_blocks_each_mode(client, store, tick):
    for i in range(3):
        ranked(client, f"t{i}", roles=["tank"])
    tick()
    assert store.stats()["queues"]["ranked"]["blocked_by"] == {"players": 3}


def test_a_lobby_waits_for_a_full_shape_then_starts_smaller(client, store, config):
    def create(player):
        result = client.simulate_post("/v1/tickets", json={"player_id": player, "mode": "royale", "mmr": 1500})
        assert result.status_code == 201, result.text
        return result.json, bearer(result.json["token"])

    tickets = [create(p) for p in ("a", "b", "c")]
    ticker = Ticker(store, config.modes, shutdown=Shutdown(), regions=config.regions, mode_lock_s=0)
    assert ticker.tick().matches_claimed == 0  # 3 of 4, fill_wait_s not reached
    assert read(client, *tickets[0])["matching"]["blocked_by"] == "players"
    hurried = dict(config.modes)
    hurried["royale"] = ModeConfig(name="royale", team_size=4, min_team_size=2, teams=1, fill_wait_s=0,
                                   accept_timeout_s=0, mmr_window=5000, mmr_window_max=5000)
    Ticker(store, hurried, shutdown=Shutdown(), regions=config.regions, mode_lock_s=0).tick()
    views = [read(client, *t) for t in tickets]
    assert {v["status"] for v in views} == {"matched"}
    assert len({v["session"]["session_id"] for v in views}) == 1


@pytest.mark.parametrize("fields,status,words", [
    ({"attributes": {"colour": "red"}}, 422, "declares no attribute"),
    ({"attributes": {"build": 3, "maps": ["a"], "level": 1}}, 422, "must be a string"),
    ({"attributes": {"build": "x", "maps": "a", "level": 1}}, 422, "list of strings"),
    ({"attributes": {"build": "x", "maps": ["a"] * 17, "level": 1}}, 422, "1 to 16"),
    ({"attributes": {"build": "x" * 65, "maps": ["a"], "level": 1}}, 422, "1-64 characters"),
    ({"attributes": {"build": "a|b", "maps": ["a"], "level": 1}}, 422, "1-64 characters"),
    ({"attributes": {"build": "a\u0085b", "maps": ["a"], "level": 1}}, 422, "control characters"),
    ({"attributes": {"build": "x", "maps": ["a\tb"], "level": 1}}, 422, "control characters"),
    ({"attributes": {"build": "x", "maps": ["a"], "level": "high"}}, 422, "must be a number"),
    ({"attributes": {"build": "x", "maps": ["a"]}}, 422, "needs attribute 'level'"),
    ({"attributes": "x"}, 400, "must be an object"),
    ({"latencies": {"mars": 10}}, 422, "Unknown region"),
    ({"latencies": {"eu": -1}}, 422, "between 0 and"),
    ({"latencies": {"eu": True}}, 422, "number of milliseconds"),
    ({"roles": ["healer"]}, 422, "has no role"),
    ({"roles": [["tank"], ["dps"]]}, 422, "2 lists for 1 player"),
    ({"roles": "tank"}, 400, "must be a list"),
    # A party is never split: two tanks where a team has one could never be matched.
    ({"party": ["q"], "roles": ["tank"]}, 422, "cannot all be played on one team"),
    ({"party": ["q"], "roles": [["dps"], ["dps"]]}, 422, "tank 1, dps 1 per team"),
])
def test_bad_rule_inputs_are_refused_with_a_reason(client, fields, status, words):
    body = {"player_id": "p", "mode": "ranked", "mmr": 1500,
            "attributes": {"build": "x", "maps": ["a"], "level": 1}, "latencies": {"eu": 10},
            **fields}
    result = client.simulate_post("/v1/tickets", json=body)
    assert result.status_code == status, result.text
    assert words in result.json["description"], result.json


def test_rule_fields_on_a_plain_mode_are_refused(client):
    for fields in ({"latencies": {"eu": 10}}, {"roles": ["tank"]}, {"attributes": {"a": "b"}}):
        result = client.simulate_post("/v1/tickets", json={"player_id": "p", "mode": "duel", "mmr": 1, **fields})
        assert result.status_code == 422, (fields, result.text)


def test_a_latency_mode_needs_latencies_or_a_region(client):
    result = client.simulate_post("/v1/tickets", json={
        "player_id": "p", "mode": "ranked", "mmr": 1500,
        "attributes": {"build": "x", "maps": ["a"], "level": 1}})
    assert result.status_code == 422
    assert "latencies" in result.json["description"]


def test_a_party_offers_one_role_list_per_member(client, store, tick):
    body = {"player_id": "q1", "mode": "ranked", "mmr": 1500, "party": ["q2"],
            "attributes": {"build": "tank-heavy", "maps": ["nuke"], "level": 10},
            "latencies": {"eu": 20}, "roles": [["tank"], ["dps"]]}
    result = client.simulate_post("/v1/tickets", json=body)
    assert result.status_code == 201, result.text
    assert result.json["roles"] == [["tank"], ["dps"]]
    ranked(client, "r1", roles=["dps"], latencies={"eu": 20})
    ranked(client, "r2", roles=["tank"], latencies={"eu": 20})
    assert tick().matches_claimed == 1
    client.simulate_put("/v1/servers/gs-eu", json={"address": "10.0.0.8:7777", "region": "eu"},
                        headers=SERVER_AUTH)
    assert store.allocate(10)[0] == 1
    view = read(client, result.json, bearer(result.json["token"]))
    roles = view["assignment"]["roles"]
    assert roles["q1"] == "tank" and roles["q2"] == "dps"
    team = next(t for t in view["assignment"]["teams"] if "q1" in t)
    assert sorted(team) == ["q1", "q2"]
