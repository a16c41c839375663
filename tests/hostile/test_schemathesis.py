"""Requests generated from /v1/openapi.json against a real `mmserver` process.

Schemathesis reads the document the running service serves and generates, per operation,
schema-valid and schema-breaking requests (wrong types, missing fields, odd strings, unexpected
methods). Every answer must pass:
- not_a_server_error: no 5xx;
- status_code_conformance, content_type_conformance, response_headers_conformance,
  response_schema_conformance: the status is documented for the operation and the body and
  headers match the document;
- negative_data_rejection: a request the document says is invalid is refused with a 4xx.

Generated ticket ids name no ticket, so most ticket calls would stop at 404: every other case
of a ticket operation is pointed at a live ticket with its own token, and every other case of a
server operation carries the server token, so the code behind the token checks is reached too.
Example counts are bounded so the whole module runs in well under two minutes.
"""
from __future__ import annotations

import itertools
from collections import Counter
import json
import os
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mmserver.http.app import load_openapi_bytes
from tests.hostile.conftest import SERVER_TOKEN, Ticket, create_ticket
from tests.process.harness import MMServer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
TICKET_OPERATIONS = {"readTicket", "cancelTicket", "acceptMatch", "declineMatch"}
SERVER_OPERATIONS = {"heartbeatServer", "deregisterServer", "readMatch", "finishMatch", "createBackfill",
                     "cancelBackfill", "leaveMatch"}
# A long-poll on a live ticket would wait up to 30 s for a change that never comes.
LONGEST_WAIT_S = 0.2
# Per operation; HOSTILE_MAX_EXAMPLES=1000 for a deeper run by hand (docs/HOSTILE.md).
MAX_EXAMPLES = int(os.environ.get("HOSTILE_MAX_EXAMPLES", "100"))
MODES = ("duel", "squad")


class LiveTickets:
    """A live ticket for two calls out of three (the last one a fresh ticket once it was
    cancelled); also counts what the fuzzing reached."""

    def __init__(self, service: MMServer) -> None:
        self._service = service
        self._turn = itertools.count()
        self._ticket: Ticket | None = None
        self.seen: Counter[tuple[str, str, int]] = Counter()  # (operationId, mode, status)

    def next(self) -> Ticket | None:
        if next(self._turn) % 3 == 2:
            return None
        if self._ticket is None or self._ended(self._ticket):
            self._ticket = create_ticket(self._service, prefix="fuzz")
        return self._ticket

    def _ended(self, ticket: Ticket) -> bool:
        answer = self._service.get(f"/v1/tickets/{ticket.ticket_id}", token=ticket.token)
        return answer.status != 200 or answer.json()["status"] != "queued"


@pytest.fixture(scope="module")
def live_tickets(service: MMServer) -> LiveTickets:
    return LiveTickets(service)


# The document kept in the repo; test_served_document_is_the_repo_document checks that the
# running service serves exactly this one. (schemathesis's fixture-based loader does not run
# under pytest 9, so the schema is loaded at import and the base URL given per call.)
# A request that breaks the document may also be refused for its size (413, documented on
# every operation): schemathesis's default list of rejections lacks it, and the maps of
# attributes and latencies let it generate bodies over the limit.
_REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
schema = schemathesis.openapi.from_dict(
    json.loads(load_openapi_bytes()),
    config=SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": _REJECTIONS}}}))


def test_served_document_is_the_repo_document(service: MMServer) -> None:
    answer = service.get("/v1/openapi.json")
    assert answer.status == 200
    assert answer.json() == json.loads(load_openapi_bytes())


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_api_answers_as_documented(case, service: MMServer, live_tickets: LiveTickets) -> None:
    operation = case.operation.definition.raw.get("operationId")
    turn = next(_turns)
    # A component generated to break the document stays broken: pointing a bad path at a live
    # ticket, or replacing a token the case left out or mangled on purpose, would make it valid.
    path_free = _positive(case, ParameterLocation.PATH)
    auth_free = _positive(case, ParameterLocation.HEADER)
    if operation in TICKET_OPERATIONS and path_free:
        ticket = live_tickets.next()
        if ticket is not None:
            case.path_parameters["ticket_id"] = ticket.ticket_id
            # A generated bearer token is some other ticket's token (403); half the time send
            # the ticket's own, to reach the state changes behind it.
            if auth_free and turn % 2:
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {ticket.token}"}
            wait = (case.query or {}).get("wait")
            if isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait > LONGEST_WAIT_S:
                case.query["wait"] = LONGEST_WAIT_S
    elif operation in SERVER_OPERATIONS and auth_free and turn % 2:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {SERVER_TOKEN}"}
    elif operation == "createTicket" and _positive(case, ParameterLocation.BODY) \
            and isinstance(case.body, dict) and turn % 2:
        # A generated mode names no queue (422): half the time use a configured one. The service
        # is open (no [auth]): without a player token, player_id and mmr are needed too.
        case.body["mode"] = MODES[turn // 2 % len(MODES)]
        case.body.setdefault("player_id", f"fuzz-create-{turn}")
        case.body.setdefault("mmr", 1500)
    response = case.call_and_validate(base_url=service.url, checks=CHECKS, timeout=10)
    negative = case.meta is not None and case.meta.generation.mode.is_negative
    live_tickets.seen[(operation, "negative" if negative else "positive", response.status_code)] += 1


def _positive(case, location: ParameterLocation) -> bool:
    if case.meta is None:
        return True
    component = case.meta.components.get(location)
    return component is None or not component.mode.is_negative


_turns = itertools.count()


def test_fuzzing_reached_the_code_behind_the_tokens(live_tickets: LiveTickets) -> None:
    """Runs after the generated cases (same module, same fixture): the substitutions above
    must have produced successes and state conflicts, not only 401/404 at the door."""
    statuses = {(operation, status) for (operation, _mode, status) in live_tickets.seen}
    print("\n".join(f"{op} {mode} {status}: {n}" for (op, mode, status), n in sorted(live_tickets.seen.items())))
    for expected in [("createTicket", 201), ("createTicket", 400), ("createTicket", 422),
                     ("readTicket", 200), ("readTicket", 403), ("readTicket", 404),
                     ("cancelTicket", 200), ("acceptMatch", 409), ("heartbeatServer", 200),
                     ("heartbeatServer", 401), ("finishMatch", 404)]:
        assert expected in statuses, (expected, sorted(statuses))
