"""The shared Lua library (scripts/lib/): one concept a file, each saying what it holds, and
every definition placed after the definitions it uses (scripts.assemble relies on that)."""
import re
from importlib import resources

from mmserver.store import keys, scripts


def test_every_module_starts_with_a_comment_and_is_in_the_library():
    folder = resources.files("mmserver.store").joinpath("scripts", "lib")
    present = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua"))
    assert present == sorted(scripts.LIB_MODULES)
    for module in scripts.LIB_MODULES:
        first = folder.joinpath(f"{module}.lua").read_text("utf-8").splitlines()[0]
        assert first.startswith("-- "), module


def test_definitions_only_use_earlier_ones():
    chunks = scripts._chunks(scripts.library())
    names = [name for name, _ in chunks if name is not None]
    assert len(names) == len(set(names)), "a name is defined twice"
    seen: set[str] = set()
    for name, text in chunks:
        used = set(scripts._IDENTIFIER.findall(scripts._code(text))) & set(names)
        # A local variable may share a later definition's name (e.g. `fields`): only names
        # defined neither earlier nor here are reported.
        later = used - seen - {name} - _locals(text)
        assert not later, f"{name} uses {later}, defined after it"
        if name is not None:
            seen.add(name)


def _locals(text: str) -> set[str]:
    import re
    return set(re.findall(r"\blocal\s+([A-Za-z_][A-Za-z0-9_]*)", text)) | \
        {n for group in re.findall(r"\bfor\s+([A-Za-z_0-9, ]+)\s+in\b", text) for n in re.split(r"[ ,]+", group) if n}


def test_every_script_assembles_from_the_library():
    library = scripts.library()
    for name in scripts.NAMES:
        assert scripts.assemble("", library, scripts._source(name)).endswith(scripts._source(name))


def test_key_names_and_settings_are_written_into_the_code_outside_strings_and_comments():
    constants = keys.lua_constants({"EVENT_MAX_LEN": 5})
    text = "local k = TICKET_PREFIX .. id -- TICKET_PREFIX\nx('TICKET_PREFIX', EVENT_MAX_LEN, MY_TICKET_PREFIX)"
    assert scripts.inline(text, constants) == (
        "local k = 'mm:t:' .. id -- TICKET_PREFIX\nx('TICKET_PREFIX', 5, MY_TICKET_PREFIX)")


def test_no_assembled_script_keeps_a_name_of_the_constants(redis_client):
    store_scripts = scripts.Scripts(redis_client)
    for name, source in store_scripts._sources.items():
        code = scripts._code(source)
        for constant in keys.lua_constants(scripts.DEFAULT_SETTINGS):
            assert not re.search(rf"(?<![A-Za-z0-9_'])\b{constant}\b(?!')", code), (name, constant)
    store_scripts.load_all()  # every one compiles
