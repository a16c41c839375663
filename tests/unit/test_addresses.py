"""A server address's canonical spelling (mmserver/addresses.py)."""
from __future__ import annotations

import pytest

from mmserver.addresses import BadAddress, canonical_address


@pytest.mark.parametrize("raw, canonical", [
    ("10.0.0.5:7777", "10.0.0.5:7777"),
    ("10.0.0.5:07777", "10.0.0.5:7777"),
    ("Game-1.EU.example.com:7777", "game-1.eu.example.com:7777"),
    ("host.example.:1", "host.example:1"),
    ("[::1]:65535", "[::1]:65535"),
    ("[0:0:0:0:0:0:0:1]:7777", "[::1]:7777"),
    ("[2001:DB8::0001]:7777", "[2001:db8::1]:7777"),
    ("[::ffff:192.0.2.1]:7777", "192.0.2.1:7777"),
    ("localhost:7777", "localhost:7777"),
])
def test_each_spelling_has_one_canonical_form(raw, canonical):
    assert canonical_address(raw) == canonical
    assert canonical_address(canonical) == canonical


@pytest.mark.parametrize("raw, malformed", [
    ("10.0.0.5", True), ("10.0.0.5:", True), (":7777", True), ("host:port", True), ("[::1:7777", True),
    ("host:7777 ", True), ("hôst:7777", True), ("host:123456", True),
    ("host:0", False), ("host:65536", False),
    ("10.0.0.05:7777", False), ("010.0.0.5:7777", False), ("10.5:7777", False), ("1.2.3.4.5:7777", False),
    ("256.0.0.1:7777", False), ("a..b:7777", False), (".host:7777", False), (".:7777", False),
    ("[1::2::3]:7777", False), ("[12345::]:7777", False),
])
def test_what_is_no_server_address_is_refused(raw, malformed):
    with pytest.raises(BadAddress) as refused:
        canonical_address(raw)
    assert refused.value.malformed is malformed
