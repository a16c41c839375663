"""Key names are spelled in one place: mmserver/store/keys.py. The Lua scripts receive them as
`local` names written before the shared library (scripts/lib/), and no script spells a key itself."""
import re
from importlib import resources

from mmserver.store import keys
from mmserver.store.scripts import DEFAULT_SETTINGS, LIB_MODULES, NAMES


def _lua(name: str) -> str:
    return resources.files("mmserver.store").joinpath("scripts", f"{name}.lua").read_text("utf-8")


LIBRARY = tuple(f"lib/{module}" for module in LIB_MODULES)


def test_no_script_spells_a_key_name():
    for name in (*LIBRARY, *NAMES):
        literals = re.findall(r"""['"]mm:[^'"]*['"]""", _lua(name))
        assert literals == [], f"{name}.lua spells {literals}: use the names of keys.LUA_NAMES"


def test_every_name_a_script_uses_is_defined_and_every_defined_name_is_used():
    sources = "\n".join(_lua(name) for name in (*LIBRARY, *NAMES))
    for name in keys.LUA_NAMES:
        assert re.search(rf"\b{name}\b", sources), f"{name} is defined for Lua but no script uses it"
    code = re.sub(r"--[^\n]*|'[^'\n]*'", "", sources)  # comments and strings (Redis commands) out
    local = {name for line in re.findall(r"^local ([A-Z_, ]+) =", code, re.M) for name in re.split(r",\s*", line)}
    capitals = set(re.findall(r"\b([A-Z][A-Z_]{2,})\b", code)) - {"ARGV"} - local
    defined = set(keys.LUA_NAMES) | set(DEFAULT_SETTINGS)
    assert capitals <= defined, capitals - defined


def test_python_key_builders_use_the_same_prefixes():
    assert keys.ticket("x") == keys.TICKET_PREFIX + "x"
    assert keys.queued_tickets("abc").startswith(keys.QUEUED_PREFIX)
    assert keys.players("p").startswith(keys.PLAYERS_PREFIX)
    assert keys.queue("duel", None) == keys.QUEUE_PREFIX + "duel:"
    assert keys.free_servers("eu") == keys.SERVERS_FREE + ":eu"


def test_the_scripts_run_with_the_generated_names(store, redis_client):
    view, token = store.create_ticket(player_id="p", mode="duel", mmr=1, region=None, party=[])
    assert redis_client.hexists(keys.queued_tickets(view["ticket_id"]), view["ticket_id"])
    assert redis_client.hexists(keys.players("p"), "p")
