"""A game server's address in one spelling, so that one endpoint is one server.

SPEC: registering an address that a static entry or another server holds answers 409, and no
server hosts two matches at once. The registry compares addresses as strings, so every address
(registered, or static in the configuration) is kept in this canonical form: the port's digits
as a number, an IPv4 address as Python writes it (no leading zeros), an IPv6 address
compressed in brackets (an IPv4-mapped one as its IPv4 address), a name in lower case without
the root's trailing dot. Otherwise "10.0.0.5:07777", "10.0.0.05:7777" or "HOST.example.:7777"
registered beside "10.0.0.5:7777" or "host.example:7777" as a second, free server and took a
second match onto a busy one. Two different names for one host are not detected: a fleet
registers each server under one name or its IP.
"""
from __future__ import annotations

import ipaddress
import re

# host:port, host a DNS name, an IPv4 address or a bracketed IPv6 address.
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253}):(?P<port>[0-9]{1,5})")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")


class BadAddress(ValueError):
    """`malformed`: not host:port at all (otherwise: the right shape, a value out of range)."""

    def __init__(self, reason: str, *, malformed: bool = False) -> None:
        super().__init__(reason)
        self.malformed = malformed


def canonical_address(raw: str) -> str:
    """"host:port" in its canonical form; BadAddress when it is no server's address."""
    match = _HOST_PORT.fullmatch(raw)
    if match is None:
        raise BadAddress('expected "host:port" (IPv6 hosts in brackets)', malformed=True)
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise BadAddress("the port must be between 1 and 65535")
    host = match["host"]
    if host.startswith("["):
        try:
            ip = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise BadAddress(f"{host} is not an IPv6 address") from None
        mapped = ip.ipv4_mapped
        return f"{mapped}:{port}" if mapped else f"[{ip.compressed}]:{port}"
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]  # "name." is the same name, fully qualified
    if not host or "" in host.split("."):
        raise BadAddress(f"{match['host']} is not a host name (an empty label)")
    if _DOTTED_NUMBERS.fullmatch(host):
        # Only numbers: an IPv4 address, written one way. Resolvers would read "10.0.0.05" or
        # "10.5" as addresses too (octal, shorthand): refused rather than guessed.
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise BadAddress(f"{host} is not an IPv4 address (four numbers 0-255, no leading zeros)") from None
    return f"{host}:{port}"
