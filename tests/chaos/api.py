"""A small HTTP/JSON client for the public API over loopback (http.client: no proxies, no retries)."""
from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int  # 0: no answer (connection refused, reset, timed out)
    body: Any
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def call(base_url: str, method: str, path: str, body: Any = None, token: str | None = None,
         timeout: float = 10.0) -> Answer:
    parsed = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    headers = {"Connection": "close"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as error:
        return Answer(0, None, f"{type(error).__name__}: {error}")
    finally:
        connection.close()
    try:
        parsed_body = json.loads(raw) if raw else None
    except ValueError:
        parsed_body = raw.decode("utf-8", "replace")
    return Answer(response.status, parsed_body)
