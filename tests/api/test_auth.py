"""Who may call what: backend keys, player JWTs (signed here for real with PyJWT), ticket
tokens and the server token, each inside and outside its rights."""
from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mmserver.config import AuthConfig, Config, LimitsConfig, ServersConfig
from mmserver.http.app import create_public_app
from tests.api.conftest import MODES, SERVER_TOKEN, DocumentedClient, bearer, openapi

BACKEND_KEY = "backend-key-0123456789abcdef"
OLD_BACKEND_KEY = "backend-key-rotated-out-000000"
SECRET = "jwt-secret-0123456789abcdef0123456789"
ISSUER = "https://auth.example.com"
AUDIENCE = "mmserver"


def player_token(sub="alice", key=SECRET, algorithm="HS256", **claims):
    payload = {"sub": sub, "exp": int(time.time()) + 300, "iss": ISSUER, "aud": AUDIENCE, "mmr": 1500}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=algorithm)


def make_client(store, waiters, readiness, observed, *, auth=None, limits=None):
    auth = auth or AuthConfig(backend_keys=(BACKEND_KEY, OLD_BACKEND_KEY), player_jwt_key=SECRET,
                              player_jwt_algorithm="HS256", player_jwt_issuer=ISSUER,
                              player_jwt_audience=AUDIENCE, trusted_claims=("mmr",))
    config = Config(modes=MODES, servers=ServersConfig(token=SERVER_TOKEN), auth=auth,
                    limits=limits or LimitsConfig(), max_longpolls=4, http_threads=8)
    app = create_public_app(store=store, waiters=waiters, readiness=readiness, config=config)
    return DocumentedClient(app, openapi(), observed)


@pytest.fixture
def api(store, waiters, readiness, observed_statuses):
    return make_client(store, waiters, readiness, observed_statuses)


def post(api, body, token=None):
    return api.simulate_post("/v1/tickets", json=body, headers=bearer(token) if token else {})


def test_a_create_without_a_credential_is_401_when_not_open(api):
    result = post(api, {"player_id": "alice", "mode": "duel", "mmr": 1500})
    assert result.status_code == 401 and result.headers["www-authenticate"] == "Bearer"


def test_a_backend_key_creates_for_any_player_with_any_values(api):
    for key in (BACKEND_KEY, OLD_BACKEND_KEY):  # both keys of a rotation
        result = post(api, {"player_id": f"p-{key[-3:]}", "mode": "duel", "mmr": 2900}, key)
        assert result.status_code == 201 and result.json["mmr"] == 2900
    assert post(api, {"player_id": "x", "mode": "duel", "mmr": 1}, BACKEND_KEY + "x").status_code == 401


def test_a_player_creates_for_itself_with_its_trusted_mmr(api):
    result = post(api, {"mode": "duel"}, player_token(mmr=1720))
    assert result.status_code == 201
    assert (result.json["player_id"], result.json["mmr"]) == ("alice", 1720)


def test_a_body_setting_a_trusted_claim_is_422_naming_it(api):
    result = post(api, {"mode": "duel", "mmr": 3000}, player_token())
    assert result.status_code == 422 and "'mmr'" in result.json["description"]


def test_a_player_cannot_queue_someone_else(api):
    result = post(api, {"player_id": "bob", "mode": "duel"}, player_token())
    assert result.status_code == 403


def test_party_members_only_from_the_party_claim(api):
    token = player_token(party=["amy", "ada"])
    assert post(api, {"mode": "squad", "party": ["zed"]}, token).status_code == 403
    created = post(api, {"mode": "squad", "party": ["amy"]}, token)
    assert created.status_code == 201
    # amy follows (and may cancel) her party's ticket with her own token
    amy = bearer(player_token(sub="amy"))
    ticket = created.json["ticket_id"]
    assert api.simulate_get(f"/v1/tickets/{ticket}", headers=amy).json["player_id"] == "alice"
    assert api.simulate_get(f"/v1/tickets/{ticket}", headers=bearer(player_token(sub="bob"))).status_code == 403
    assert api.simulate_delete(f"/v1/tickets/{ticket}", headers=amy).json["status"] == "cancelled"


def test_a_token_without_the_trusted_claim_is_refused(api):
    assert post(api, {"mode": "duel"}, player_token(mmr=None)).status_code == 403


@pytest.mark.parametrize("mmr", ["1500", True, [1500], {"v": 1}])
def test_a_trusted_claim_of_the_wrong_type_blames_the_token_not_the_body(api, mmr):
    result = post(api, {"mode": "duel"}, player_token(mmr=mmr))
    assert result.status_code == 401, result.text
    assert result.json["description"] == "The player token's 'mmr' claim must be a number."


@pytest.mark.parametrize("case", ["expired", "wrong secret", "wrong audience", "wrong issuer", "no exp",
                                  "alg none", "garbage", "bad sub", "bad party", "hs with rs key"])
def test_every_bad_player_token_is_a_401_with_a_reason(api, case, caplog):
    now = int(time.time())
    if case == "expired":
        token = player_token(exp=now - 60)  # beyond the 30 s leeway
    elif case == "wrong secret":
        token = player_token(key="another-secret-0123456789abcdef0123")
    elif case == "wrong audience":
        token = player_token(aud="someone-else")
    elif case == "wrong issuer":
        token = player_token(iss="https://evil.example.com")
    elif case == "no exp":
        token = jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "mmr": 1}, SECRET, algorithm="HS256")
    elif case == "alg none":
        token = jwt.encode({"sub": "alice", "exp": now + 300, "iss": ISSUER, "aud": AUDIENCE, "mmr": 1},
                           None, algorithm="none")
    elif case == "garbage":
        token = "a.b.c"
    elif case == "bad sub":
        token = player_token(sub="no spaces allowed")
    elif case == "bad party":
        token = player_token(party="amy")
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = player_token(key=key, algorithm="RS256")
    with caplog.at_level("DEBUG"):
        result = post(api, {"mode": "duel"}, token)
    assert result.status_code == 401, result.text
    assert result.json["description"] and token not in result.text
    assert token not in caplog.text


def test_a_token_within_the_clock_skew_is_accepted(api):
    assert post(api, {"mode": "duel"}, player_token(exp=int(time.time()) - 10)).status_code == 201


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
def test_public_key_tokens(store, waiters, readiness, observed_statuses, kind):
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "RS256"
               else ec.generate_private_key(ec.SECP256R1()))
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    api = make_client(store, waiters, readiness, observed_statuses,
                      auth=AuthConfig(player_jwt_key=pem, player_jwt_algorithm=kind))
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, private, algorithm=kind)
    assert post(api, {"mode": "duel", "mmr": 1500}, token).status_code == 201
    # the public key used as an HMAC secret (the RS/HS confusion) is refused
    forged = jwt.api_jws.PyJWS().encode(b'{"sub":"bob","exp":9999999999}', b"k" * 32, algorithm="HS256")
    assert post(api, {"player_id": "bob", "mode": "duel", "mmr": 1}, forged).status_code == 401


def test_ticket_calls_accept_ticket_token_backend_key_and_player(api):
    created = post(api, {"player_id": "carol", "mode": "duel", "mmr": 1500}, BACKEND_KEY).json
    path = f"/v1/tickets/{created['ticket_id']}"
    assert api.simulate_get(path, headers=bearer(created["token"])).status_code == 200
    assert api.simulate_get(path, headers=bearer(BACKEND_KEY)).status_code == 200
    assert api.simulate_get(path, headers=bearer(player_token(sub="carol"))).status_code == 200
    assert api.simulate_get(path).status_code == 401
    assert api.simulate_get(path, headers=bearer("not-the-token")).status_code == 403
    assert api.simulate_get(path, headers=bearer(SERVER_TOKEN)).status_code == 403


def test_server_endpoints_take_only_the_server_token(api):
    body = {"address": "10.0.0.5:7777"}
    assert api.simulate_put("/v1/servers/gs-1", json=body).status_code == 401
    assert api.simulate_put("/v1/servers/gs-1", json=body, headers=bearer(BACKEND_KEY)).status_code == 403
    assert api.simulate_put("/v1/servers/gs-1", json=body, headers=bearer(player_token())).status_code == 403
    assert api.simulate_put("/v1/servers/gs-1", json=body, headers=bearer(SERVER_TOKEN)).status_code == 200
    assert api.simulate_post("/v1/tickets", json={"player_id": "x", "mode": "duel", "mmr": 1},
                             headers=bearer(SERVER_TOKEN)).status_code == 403


def test_polling_in_a_tight_loop_is_throttled_without_slowing_anyone_else(store, waiters, readiness,
                                                                           observed_statuses):
    api = make_client(store, waiters, readiness, observed_statuses,
                      limits=LimitsConfig(poll_per_s=1, poll_burst=3))
    spinner = post(api, {"player_id": "spin", "mode": "duel", "mmr": 1}, BACKEND_KEY).json
    other = post(api, {"player_id": "calm", "mode": "duel", "mmr": 1}, BACKEND_KEY).json
    statuses = [api.simulate_get(f"/v1/tickets/{spinner['ticket_id']}", headers=bearer(spinner["token"]))
                for _ in range(6)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    limited = statuses[-1]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert api.simulate_get(f"/v1/tickets/{other['ticket_id']}",
                            headers=bearer(other["token"])).status_code == 200
    # backends are not limited by default
    for _ in range(10):
        assert api.simulate_get(f"/v1/tickets/{spinner['ticket_id']}",
                                headers=bearer(BACKEND_KEY)).status_code == 200


def test_a_player_creates_at_most_its_budget_of_tickets(api):
    token = player_token(sub="dave")
    for _ in range(10):
        created = post(api, {"mode": "duel"}, token)
        assert created.status_code == 201
        api.simulate_delete(f"/v1/tickets/{created.json['ticket_id']}", headers=bearer(token))
    result = post(api, {"mode": "duel"}, token)
    assert result.status_code == 429 and int(result.headers["retry-after"]) >= 1


def test_an_idempotent_retry_gets_the_same_ticket_and_token(api):
    body = {"mode": "duel", "idempotency_key": "req-42"}
    token = player_token(sub="erin")
    first, again = post(api, body, token), post(api, body, token)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json["ticket_id"] == first.json["ticket_id"] and again.json["token"] == first.json["token"]
    assert post(api, {"mode": "duel", "idempotency_key": "req-43"}, token).status_code == 409


def test_a_long_poll_answered_early_carries_retry_after(store, readiness, observed_statuses):
    from mmserver.http.waiters import Waiters
    api = make_client(store, Waiters(0), readiness, observed_statuses)
    created = post(api, {"player_id": "fay", "mode": "duel", "mmr": 1}, BACKEND_KEY).json
    result = api.simulate_get(f"/v1/tickets/{created['ticket_id']}", params={"wait": "5"},
                              headers=bearer(created["token"]))
    assert result.status_code == 200 and result.headers["retry-after"] == "2"


def test_the_roster_is_for_servers_and_backends(api):
    assert api.simulate_get("/v1/matches/abc", headers=bearer(player_token())).status_code == 403
    assert api.simulate_get("/v1/matches/abc").status_code == 401
    assert api.simulate_get("/v1/matches/abc", headers=bearer(SERVER_TOKEN)).status_code == 404
    assert api.simulate_get("/v1/matches/abc", headers=bearer(BACKEND_KEY)).status_code == 404


def test_malformed_party_members_are_400_and_the_player_itself_422(api):
    token = player_token(party=["amy"])
    assert post(api, {"mode": "squad", "party": [{}]}, token).status_code == 400
    assert post(api, {"mode": "squad", "party": ["alice"]}, token).status_code == 422


def test_an_exp_beyond_any_clock_is_a_401(api):
    token = jwt.encode({"sub": "alice", "exp": 10 ** 400, "mmr": 1, "iss": ISSUER, "aud": AUDIENCE},
                       SECRET, algorithm="HS256")
    assert post(api, {"mode": "duel"}, token).status_code == 401


def test_every_trustable_claim_has_a_type_to_check():
    from mmserver.config.model import TRUSTABLE_CLAIMS
    from mmserver.http import access
    assert set(access._CLAIM_TYPES) == set(access._CLAIM_WORDS) == set(TRUSTABLE_CLAIMS)
