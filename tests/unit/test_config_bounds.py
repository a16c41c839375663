"""Values the converters accept only within what the places using them can hold: every number
a float can carry, every duration and count within the bounds Redis and Lua keep exact."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmserver.config import ConfigError, load

HUGE = "1" + "0" * 400  # an integer TOML reads, beyond a float's range


def refusal(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mm.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load([], {"MMSERVER_CONFIG": str(path)})
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("text, setting", [
    (f"[modes.duel]\nmmr_window = {HUGE}\n", "modes.duel.mmr_window"),
    (f"[modes.duel]\nticket_ttl_s = {HUGE}\n", "modes.duel.ticket_ttl_s"),
    ("[modes.duel]\n[[modes.duel.rules]]\nname = 'lvl'\nkind = 'distance'\nattribute = 'mmr'\n"
     f"max = {HUGE}\n", "max"),
    (f"[regions]\nnames = ['eu']\n[modes.duel]\nlatency = {{max_ms = {HUGE}}}\n", "modes.duel.latency.max_ms"),
    (f"[modes.duel]\n[servers]\nheartbeat_ttl_s = {HUGE}\n", "servers.heartbeat_ttl_s"),
    (f"[modes.duel]\n[limits]\npoll_per_s = {HUGE}\n", "limits.poll_per_s"),
])
def test_an_integer_too_large_for_a_float_is_refused_naming_the_setting(tmp_path, text, setting):
    message = refusal(tmp_path, text)
    assert setting in message and "expected a number, got an integer of 401 digits" in message, message
