"""The OpenAPI document covers the app: every route and method, every status, resolvable refs."""
from __future__ import annotations

import falcon.inspect

from tests.api.conftest import openapi

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def app_operations(app) -> set[tuple[str, str]]:
    operations = set()
    for route in falcon.inspect.inspect_routes(app):
        for method in route.methods:
            if not method.internal:  # Falcon's own 405/OPTIONS responders
                operations.add((route.path, method.method.lower()))
    return operations


def document_operations(document) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item if method in METHODS}


def test_every_route_and_method_is_documented_and_nothing_else(app):
    assert app_operations(app) == document_operations(openapi())


def test_served_document_is_the_one_in_the_repo(client):
    result = client.simulate_get("/v1/openapi.json")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/json")
    assert result.json == openapi()
    assert result.json["openapi"].startswith("3.")


def test_every_operation_documents_its_responses_with_schemas():
    document = openapi()
    for path, item in document["paths"].items():
        for method in set(item) & METHODS:
            operation = item[method]
            assert operation.get("operationId"), (path, method)
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), (path, method)
            for code, response in responses.items():
                response = resolve(document, response)
                assert response.get("description"), (path, method, code)
                assert "application/json" in response.get("content", {}), (path, method, code)


def test_security_schemes_cover_every_credential():
    document = openapi()
    schemes = document["components"]["securitySchemes"]
    for name in ("backendKey", "playerToken", "ticketToken", "serverToken"):
        assert schemes[name]["type"] == "http" and schemes[name]["scheme"] == "bearer", name
        assert schemes[name].get("description"), name
    paths = document["paths"]
    ticket_calls = [{"ticketToken": []}, {"playerToken": []}, {"backendKey": []}]
    assert paths["/v1/tickets"]["post"]["security"] == [{"backendKey": []}, {"playerToken": []}, {}]
    assert paths["/v1/tickets/{ticket_id}"]["get"]["security"] == ticket_calls
    assert paths["/v1/tickets/{ticket_id}"]["delete"]["security"] == ticket_calls
    assert paths["/v1/tickets/{ticket_id}/accept"]["post"]["security"] == ticket_calls
    assert paths["/v1/tickets/{ticket_id}/decline"]["post"]["security"] == ticket_calls
    assert paths["/v1/servers/{server_id}"]["put"]["security"] == [{"serverToken": []}]
    assert paths["/v1/servers/{server_id}"]["delete"]["security"] == [{"serverToken": []}]
    assert paths["/v1/matches/{match_id}"]["get"]["security"] == [{"serverToken": []}, {"backendKey": []}]
    assert paths["/v1/matches/{match_id}/finish"]["post"]["security"] == [{"serverToken": []}]


def test_every_v1_operation_documents_401_and_429_with_retry_after():
    document = openapi()
    for path, item in document["paths"].items():
        if not path.startswith("/v1/") or path == "/v1/openapi.json":
            continue
        for method in set(item) & METHODS:
            responses = item[method]["responses"]
            assert "401" in responses, (path, method)
            limited = resolve(document, responses["429"])
            header = resolve(document, limited["headers"]["Retry-After"])
            assert header.get("required") is True, (path, method)


def test_every_reference_resolves():
    document = openapi()

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(document, node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)


def resolve(document, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target = document
        for part in ref[2:].split("/"):
            assert part in target, f"unresolved {ref}"
            target = target[part]
        node = target
    return node
