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


def test_security_schemes_cover_ticket_and_server_tokens():
    document = openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["ticketToken"]["scheme"] == "bearer"
    assert schemes["serverToken"]["scheme"] == "bearer"
    assert document["paths"]["/v1/tickets/{ticket_id}"]["get"]["security"] == [{"ticketToken": []}]
    assert document["paths"]["/v1/servers/{server_id}"]["put"]["security"] == [{"serverToken": []}]


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
