"""HTTP/1.1 over a plain socket: send exactly the bytes a test wants, read one response."""
from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_answer(sock: socket.socket) -> RawAnswer:
    """One response: the head, then Content-Length bytes (or up to the close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    else:
        while chunk := sock.recv(65536):
            body += chunk
    return RawAnswer(status, headers, body)


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> RawAnswer:
    """Send `raw` on a new connection and read one response."""
    with connect(port, timeout) as sock:
        sock.sendall(raw)
        return read_answer(sock)


def http_request(method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None,
                 content_type: str | None = "application/json") -> bytes:
    """The bytes of one request; Content-Length from the body unless `headers` sets it."""
    lines = [f"{method} {target} HTTP/1.1", "Host: mmserver", "Connection: close"]
    given = {name.lower() for name in (headers or {})}
    if content_type and body:
        lines.append(f"Content-Type: {content_type}")
    if "content-length" not in given and "transfer-encoding" not in given and (body or method in ("POST", "PUT")):
        lines.append(f"Content-Length: {len(body)}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
