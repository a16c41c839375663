"""Validation as pure functions: 400 for the wrong shape, 422 for a broken rule."""
from __future__ import annotations

import pytest

from mmserver.config import ModeConfig
from mmserver.http import validation
from mmserver.http.validation import BadRequest, Unprocessable

MODES = {"duel": ModeConfig(name="duel"), "squad": ModeConfig(name="squad", team_size=4)}


def ticket(**fields):
    body = {"player_id": "p1", "mode": "duel", "mmr": 1500}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


def test_a_valid_ticket_comes_back_clean():
    request = validation.ticket_request(ticket(mode="squad", region="eu-west", party=["p2", "p3"]), MODES,
                                        ("eu-west",))
    assert request == validation.TicketRequest("p1", "squad", 1500.0, "eu-west", ("p2", "p3"))
    assert isinstance(request.mmr, float)
    plain = validation.ticket_request(ticket(region=None, party=None), MODES)
    assert (plain.region, plain.party) == (None, ())


@pytest.mark.parametrize("document", [
    [], "x", None, 3,
    ticket(player_id=...), ticket(mode=...), ticket(mmr=...),
    ticket(extra=1),
    ticket(player_id=7), ticket(player_id=""), ticket(player_id="x" * 65), ticket(player_id="a b"),
    ticket(player_id="é"), ticket(player_id="a/b"),
    ticket(mode=1), ticket(mmr="1500"), ticket(mmr=True), ticket(mmr=None),
    ticket(region=5), ticket(region=""), ticket(region="eu.west"), ticket(region="x" * 33),
    ticket(party="p2"), ticket(party={"p2": 1}), ticket(mode="squad", party=[2]),
    ticket(mode="squad", party=["ok", "bad id"]),
])
def test_wrong_shapes_are_400(document):
    with pytest.raises(BadRequest) as caught:
        validation.ticket_request(document, MODES)
    assert caught.value.status == 400
    assert caught.value.description


@pytest.mark.parametrize("document", [
    ticket(mode="ranked"),
    ticket(mmr=-1), ticket(mmr=100000.5), ticket(mmr=float("inf")), ticket(mmr=float("nan")), ticket(mmr=10**400),
    ticket(party=["p2"]),  # duel: team_size 1, no room for a party
    ticket(mode="squad", party=["p2", "p3", "p4", "p5"]),
    ticket(mode="squad", party=["p1"]),
    ticket(mode="squad", party=["p2", "p2"]),
])
def test_broken_rules_are_422(document):
    with pytest.raises(Unprocessable) as caught:
        validation.ticket_request(document, MODES)
    assert caught.value.status == 422


def test_bounds_are_inclusive():
    assert validation.ticket_request(ticket(mmr=0), MODES).mmr == 0
    assert validation.ticket_request(ticket(mmr=100000), MODES).mmr == 100000
    assert validation.ticket_request(ticket(player_id="A-z_0.9:" + "x" * 56), MODES).player_id.startswith("A-z")
    assert len(validation.ticket_request(ticket(mode="squad", party=["a", "b", "c"]), MODES).party) == 3


def test_unknown_mode_message_lists_the_known_ones():
    with pytest.raises(Unprocessable, match="duel, squad"):
        validation.ticket_request(ticket(mode="ranked"), MODES)


@pytest.mark.parametrize("address, canonical", [
    ("10.0.0.5:7777", "10.0.0.5:7777"), ("game-1.example.com:1", "game-1.example.com:1"),
    ("[::1]:65535", "[::1]:65535"), ("Game-1.Example.com.:01", "game-1.example.com:1"),
])
def test_server_addresses(address, canonical):
    assert validation.server_heartbeat({"address": address}) == validation.ServerHeartbeat(canonical, None, address)


def test_a_server_region_must_be_configured():
    assert validation.server_heartbeat({"address": "a:1", "region": "eu"}, ("eu", "us")).region == "eu"
    with pytest.raises(Unprocessable, match="Unknown region"):
        validation.server_heartbeat({"address": "a:1", "region": "asia"}, ("eu", "us"))
    with pytest.raises(Unprocessable, match="No regions are configured"):
        validation.server_heartbeat({"address": "a:1", "region": "eu"})
    with pytest.raises(Unprocessable, match="No regions are configured"):
        validation.ticket_request(ticket(region="eu"), MODES)


def test_a_ticket_region_must_be_configured_when_regions_are():
    assert validation.ticket_request(ticket(region="eu"), MODES, ("eu",)).region == "eu"
    with pytest.raises(Unprocessable, match="Unknown region"):
        validation.ticket_request(ticket(region="mars"), MODES, ("eu",))


@pytest.mark.parametrize("key", ["", "a b", "x" * 129, 5, "\u00e9"])
def test_bad_idempotency_keys(key):
    with pytest.raises(BadRequest):
        validation.ticket_request(ticket(idempotency_key=key), MODES)


@pytest.mark.parametrize("document", [
    {}, {"address": 7}, {"address": "10.0.0.5"}, {"address": "host:port"}, {"address": ":80"},
    {"address": "a b:80"}, {"address": "::1:80"}, {"address": "10.0.0.5:7777", "x": 1}, ["10.0.0.5:7777"],
])
def test_bad_server_addresses_are_400(document):
    with pytest.raises(BadRequest):
        validation.server_heartbeat(document)


@pytest.mark.parametrize("address", ["10.0.0.5:0", "10.0.0.5:65536", "10.0.0.5:99999"])
def test_ports_out_of_range_are_422(address):
    with pytest.raises(Unprocessable):
        validation.server_heartbeat({"address": address})


def test_server_ids_follow_the_player_id_alphabet():
    assert validation.server_id("gs-1.eu:a") == "gs-1.eu:a"
    for bad in ["", "x" * 65, "a b", "a/b", None]:
        with pytest.raises(BadRequest):
            validation.server_id(bad)


def test_generated_ids():
    assert validation.is_generated_id("AbC_-0123456789abcdefgh")
    for bad in ["", "a.b", "a:b", "x" * 65, "a b"]:
        assert not validation.is_generated_id(bad)


@pytest.mark.parametrize("params, expected", [
    ({}, validation.PollRequest(None, None)),
    ({"wait": "0"}, validation.PollRequest(0.0, None)),
    ({"wait": "2.5", "version": "7"}, validation.PollRequest(2.5, 7)),
    ({"wait": "30"}, validation.PollRequest(30.0, None)),
    ({"version": "0"}, validation.PollRequest(None, 0)),
])
def test_poll_parameters(params, expected):
    assert validation.poll_request(params) == expected


@pytest.mark.parametrize("params", [
    {"wait": "31"}, {"wait": "-1"}, {"wait": "nan"}, {"wait": "inf"}, {"wait": "soon"},
    {"version": "-1"}, {"version": "1.5"}, {"version": "x"}, {"version": "٣"}, {"version": "9" * 30},
    {"wait": ["1", "2"]}, {"other": "1"},
])
def test_bad_poll_parameters_are_400(params):
    with pytest.raises(BadRequest):
        validation.poll_request(params)
