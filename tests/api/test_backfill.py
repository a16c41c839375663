"""Backfill over HTTP: a real Store on the real redis-server and the real Ticker, every answer
checked against the OpenAPI document (tests/api/conftest.py)."""
from __future__ import annotations

import time

import pytest

from mmserver.config import Config, ModeConfig, ServersConfig
from mmserver.matchmaking.rules import Latency, Rule
from mmserver.shutdown import Shutdown
from mmserver.store.events import EventLog
from mmserver.ticker import Ticker
from tests.api.conftest import SERVER_TOKEN, bearer
from tests.store.invariants import check_invariants

SERVER = bearer(SERVER_TOKEN)
REGIONS = ("eu", "us")
MODES = {
    "squad": ModeConfig(name="squad", team_size=2, teams=2, accept_timeout_s=0, mmr_window=200,
                        mmr_window_growth_per_s=0, mmr_window_max=200),
    "ranked": ModeConfig(name="ranked", team_size=2, teams=2, accept_timeout_s=0, mmr_window=1000,
                         mmr_window_growth_per_s=0, mmr_window_max=1000,
                         attributes=(("build", "string"), ("maps", "string_list")),
                         roles=(("tank", 1), ("dps", 1)),
                         rules=(Rule("same-build", "same", "build"), Rule("common-map", "overlap", "maps")),
                         latency=Latency(80.0)),
    "fn": ModeConfig(name="fn", accept_timeout_s=0, attributes=(("level", "number"),),
                     match_function="tests.match_function_example:pair_by_level"),
}
TEAM_SIZES = {name: mode.team_size for name, mode in MODES.items()}


@pytest.fixture
def config() -> Config:
    return Config(modes=MODES, servers=ServersConfig(token=SERVER_TOKEN), regions=REGIONS, max_longpolls=4,
                  http_threads=8, max_body_bytes=8192)


@pytest.fixture
def ticker(store):
    return Ticker(store, MODES, shutdown=Shutdown(), regions=REGIONS, mode_lock_s=0)


def ticket(client, player, mode="squad", **fields):
    result = client.simulate_post("/v1/tickets", json={"player_id": player, "mode": mode, "mmr": 1500, **fields})
    assert result.status_code == 201, result.text
    return result.json["ticket_id"], bearer(result.json["token"])


def read(client, pair):
    result = client.simulate_get(f"/v1/tickets/{pair[0]}", headers=pair[1])
    assert result.status_code == 200, result.text
    return result.json


def heartbeat(client, server_id="gs1", address="10.0.0.1:7777", region=None):
    body = {"address": address, **({"region": region} if region else {})}
    result = client.simulate_put(f"/v1/servers/{server_id}", json=body, headers=SERVER)
    assert result.status_code == 200, result.text
    return result.json


def roster(client, match_id):
    result = client.simulate_get(f"/v1/matches/{match_id}", headers=SERVER)
    assert result.status_code == 200, result.text
    return result.json


def names(match):
    return [[p["player_id"] for p in team["players"]] for team in match["teams"]]


def squad_match(client, ticker, players=("ann", "bob", "cat", "dan"), mmr=1500):
    """Four solo players matched by the ticker onto server gs1."""
    heartbeat(client)
    pairs = {p: ticket(client, p, mmr=mmr) for p in players}
    ticker.tick()
    match_id = read(client, pairs[players[0]])["assignment"]["match_id"]
    return match_id, pairs


def test_leave_backfill_fill_seen_by_the_server(client, ticker, redis_client):
    match_id, pairs = squad_match(client, ticker)
    match = roster(client, match_id)
    assert match["version"] == 1 and match["backfills"] == []
    assert heartbeat(client)["match_version"] == 1
    gone = [p for p in ("ann", "bob", "cat", "dan") if p in names(match)[1]][0]
    left = client.simulate_delete(f"/v1/matches/{match_id}/players/{gone}", headers=SERVER)
    assert left.status_code == 200 and left.json["version"] == 2
    assert read(client, pairs[gone])["status"] == "finished"
    assert client.simulate_delete(f"/v1/matches/{match_id}/players/{gone}", headers=SERVER).status_code == 200
    created = client.simulate_post(f"/v1/matches/{match_id}/backfill", headers=SERVER,
                                   json={"slots": [{"team": 1, "count": 1}], "ttl_s": 30})
    assert created.status_code == 201, created.text
    bid = created.json["backfill_id"]
    assert roster(client, match_id)["backfills"][0]["slots"] == [{"team": 1, "count": 1}]
    eve = ticket(client, "eve", mmr=1550)
    far = ticket(client, "far", mmr=1900)  # outside the window around the match's mean (1500 ± 100)
    result = ticker.tick()
    assert result.backfilled == 1
    match = roster(client, match_id)
    assert "eve" in names(match)[1] and match["version"] == 3 and match["backfills"] == []
    assert heartbeat(client)["match_version"] == 3
    view = read(client, eve)
    assert view["status"] == "assigned" and view["assignment"]["match_id"] == match_id
    assert view["assignment"]["server"] == "10.0.0.1:7777" and view["assignment"]["join_token"]
    assert view["assignment"]["teams"] == names(match)
    assert read(client, far)["status"] == "queued"
    ended = client.simulate_delete(f"/v1/matches/{match_id}/backfill/{bid}", headers=SERVER)
    assert ended.status_code == 200 and ended.json["state"] == "filled"
    check_invariants(redis_client, TEAM_SIZES)
    types = [e["type"] for e in EventLog(redis_client).read(None, limit=1000).events
             if e.get("match_id") == match_id and e["type"].startswith(("backfill.", "ticket.assigned"))]
    assert types[-3:] == ["backfill.created", "ticket.assigned", "backfill.filled"]


def test_backfills_are_served_before_new_matches(client, ticker, redis_client):
    match_id, pairs = squad_match(client, ticker)
    client.simulate_delete(f"/v1/matches/{match_id}/players/ann", headers=SERVER)
    team = 0 if "ann" in names(roster(client, match_id))[0] or len(names(roster(client, match_id))[0]) == 1 else 1
    client.simulate_post(f"/v1/matches/{match_id}/backfill", headers=SERVER,
                         json={"slots": [{"team": team, "count": 1}]})
    heartbeat(client, "gs2", "10.0.0.2:7777")
    # Four queued players could form a new match: one of them fills the backfill instead.
    newcomers = {p: ticket(client, p) for p in ("p1", "p2", "p3", "p4")}
    ticker.tick()
    statuses = [read(client, pair)["status"] for pair in newcomers.values()]
    assert statuses.count("assigned") == 1 and statuses.count("queued") == 3
    check_invariants(redis_client, TEAM_SIZES)


def test_a_full_team_and_bad_requests(client, ticker):
    match_id, _pairs = squad_match(client, ticker)
    url = f"/v1/matches/{match_id}/backfill"
    full = client.simulate_post(url, headers=SERVER, json={"slots": [{"team": 0, "count": 1}]})
    assert full.status_code == 409 and full.json["title"] == "Team full"
    for body, status in [
        ({"slots": [{"team": 2, "count": 1}]}, 422),  # only teams 0 and 1
        ({"slots": [{"team": 0, "count": 0}]}, 422),
        ({"slots": [{"team": 0, "count": 3}]}, 422),  # above the team size
        ({"slots": [{"team": 0, "count": 1, "role": "tank"}]}, 422),  # squad has no roles
        ({"slots": [{"team": 0, "count": 1}], "ttl_s": 7200}, 422),
        ({"slots": [{"team": 0, "count": 1}], "ttl_s": 0}, 422),
        ({"slots": []}, 400),
        ({"slots": [{"team": "0", "count": 1}]}, 400),
        ({"slots": [{"team": 0, "count": 1, "extra": 1}]}, 400),
        ({"slots": [{"team": 0, "count": True}]}, 400),
        ({}, 400),
        ([1], 400),
    ]:
        result = client.simulate_post(url, headers=SERVER, json=body)
        assert result.status_code == status, (body, result.text)
    assert client.simulate_post(url, json={"slots": [{"team": 0, "count": 1}]}).status_code == 401
    assert client.simulate_post("/v1/matches/nope/backfill", headers=SERVER,
                                json={"slots": [{"team": 0, "count": 1}]}).status_code == 404
    assert client.simulate_delete(f"{url}/nope", headers=SERVER).status_code == 404
    assert client.simulate_delete(f"{url}/bad!id", headers=SERVER).status_code == 404
    assert client.simulate_delete(f"/v1/matches/{match_id}/players/zed", headers=SERVER).status_code == 404
    assert client.simulate_delete(f"/v1/matches/{match_id}/players/bad%20id", headers=SERVER).status_code == 400
    client.simulate_post(f"/v1/matches/{match_id}/finish", headers=SERVER)
    over = client.simulate_post(url, headers=SERVER, json={"slots": [{"team": 0, "count": 1}]})
    assert over.status_code == 409 and "finished" in over.json["description"]
    assert client.simulate_delete(f"/v1/matches/{match_id}/players/ann", headers=SERVER).status_code == 409


def test_a_loading_session_takes_no_backfill(client, store):
    a, b = ticket(client, "ann"), ticket(client, "bob")
    c, d = ticket(client, "cat"), ticket(client, "dan")
    store.read_queue("squad", None)
    [result] = store.claim("squad", None, [((a[0], b[0]), (c[0], d[0]))], 0)  # no server: allocating
    answer = client.simulate_post(f"/v1/matches/{result.session_id}/backfill", headers=SERVER,
                                  json={"slots": [{"team": 0, "count": 1}]})
    assert answer.status_code == 409


def test_a_match_function_mode_takes_no_backfill(client, ticker):
    heartbeat(client)
    a = ticket(client, "ann", mode="fn", attributes={"level": 3})
    ticket(client, "bob", mode="fn", attributes={"level": 4})
    ticker.tick()
    match_id = read(client, a)["assignment"]["match_id"]
    client.simulate_delete(f"/v1/matches/{match_id}/players/bob", headers=SERVER)
    answer = client.simulate_post(f"/v1/matches/{match_id}/backfill", headers=SERVER,
                                  json={"slots": [{"team": 1, "count": 1}]})
    assert answer.status_code == 422


def test_expiry_and_cancel(client, ticker, redis_client):
    match_id, pairs = squad_match(client, ticker)
    client.simulate_delete(f"/v1/matches/{match_id}/players/ann", headers=SERVER)
    client.simulate_delete(f"/v1/matches/{match_id}/players/bob", headers=SERVER)
    url = f"/v1/matches/{match_id}/backfill"
    teams = names(roster(client, match_id))
    open_teams = [i for i, team in enumerate(teams) if len(team) < 2]
    first = client.simulate_post(url, headers=SERVER, json={"slots": [{"team": open_teams[0], "count": 1}],
                                                             "ttl_s": 1}).json["backfill_id"]
    second = client.simulate_post(url, headers=SERVER, json={"slots": [{"team": open_teams[-1], "count": 1}],
                                                              "ttl_s": 60}).json["backfill_id"]
    cancelled = client.simulate_delete(f"{url}/{second}", headers=SERVER)
    assert cancelled.status_code == 200 and cancelled.json["state"] == "cancelled"
    assert client.simulate_delete(f"{url}/{second}", headers=SERVER).json["state"] == "cancelled"
    time.sleep(1.1)
    ticker.tick()
    assert client.simulate_delete(f"{url}/{first}", headers=SERVER).json["state"] == "expired"
    ticket(client, "eve")
    assert ticker.tick().backfilled == 0
    assert roster(client, match_id)["backfills"] == []
    check_invariants(redis_client, TEAM_SIZES)


def ranked(client, player, *, build="tank-build", maps=("dust2",), latencies=None, roles=("tank", "dps"), mmr=1500):
    return ticket(client, player, mode="ranked", mmr=mmr, attributes={"build": build, "maps": list(maps)},
                  latencies=latencies or {"eu": 20, "us": 150}, roles=list(roles))


def test_roles_region_and_attribute_rules_are_respected(client, ticker, redis_client):
    heartbeat(client, region="eu")
    players = {p: ranked(client, p, roles=(role,)) for p, role in
               (("t1", "tank"), ("d1", "dps"), ("t2", "tank"), ("d2", "dps"))}
    ticker.tick()
    match_id = read(client, players["t1"])["assignment"]["match_id"]
    match = roster(client, match_id)
    assert match["region"] == "eu" and match["attributes"] == {"maps": "dust2"}
    team = next(i for i, t in enumerate(match["teams"]) if "t1" in [p["player_id"] for p in t["players"]])
    client.simulate_delete(f"/v1/matches/{match_id}/players/t1", headers=SERVER)
    url = f"/v1/matches/{match_id}/backfill"
    # A mode with roles needs the role; the dps place is taken (team full for that role).
    assert client.simulate_post(url, headers=SERVER, json={"slots": [{"team": team, "count": 1}]}).status_code == 422
    assert client.simulate_post(url, headers=SERVER, json={"slots": [{"team": team, "count": 1, "role": "dps"}]}
                                ).status_code == 409
    assert client.simulate_post(url, headers=SERVER, json={"slots": [{"team": team, "count": 1, "role": "healer"}]}
                                ).status_code == 422
    created = client.simulate_post(url, headers=SERVER, json={"slots": [{"team": team, "count": 1, "role": "tank"}]})
    assert created.status_code == 201
    wrong = {
        "dps-only": ranked(client, "x1", roles=("dps",)),
        "other-build": ranked(client, "x2", build="healer-build"),
        "no-common-map": ranked(client, "x3", maps=("nuke",)),
        "too-far": ranked(client, "x4", latencies={"eu": 200, "us": 20}),
        "no-eu-latency": ranked(client, "x5", latencies={"us": 10}),
        "fixed-us": ticket(client, "x6", mode="ranked", region="us", roles=["tank"],
                           attributes={"build": "tank-build", "maps": ["dust2"]}),
    }
    ticker.tick()
    for why, pair in wrong.items():
        assert read(client, pair)["status"] == "queued", why
    good = ranked(client, "ok1", maps=("nuke", "dust2"), roles=("dps", "tank"))
    assert ticker.tick().backfilled == 1
    view = read(client, good)
    assert view["status"] == "assigned" and view["assignment"]["roles"]["ok1"] == "tank"
    # The roles are the roster's: t1, who left, is in neither (one tank a team, as the mode says).
    for pair in (good, players["d1"]):
        assignment = read(client, pair)["assignment"]
        assert set(assignment["roles"]) == set(assignment["players"]) and "t1" not in assignment["roles"]
    assert view["assignment"]["region"] == "eu" and view["assignment"]["attributes"] == {"maps": "dust2"}
    [entry] = [p for t in roster(client, match_id)["teams"] for p in t["players"] if p["player_id"] == "ok1"]
    assert entry["role"] == "tank"
    check_invariants(redis_client, TEAM_SIZES)
