"""Match rules in the configuration file: parsed values, and every refusal at start."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmserver.config import ConfigError, ModeConfig, load
from mmserver.matchmaking.rules import Latency, MatchRules, Rule, Step

REGIONS = '[regions]\nnames = ["eu-west", "us-east"]\n'

SPEC_EXAMPLE = REGIONS + """
[modes.ranked]
teams = 2
team_size = 5
accept_timeout_s = 15

[modes.ranked.attributes]
build = "string"
maps = "string_list"
level = "number"

[modes.ranked.roles]
tank = 1
healer = 1
dps = 3

[[modes.ranked.rules]]
name = "same-build"
kind = "same"
attribute = "build"

[[modes.ranked.rules]]
name = "common-map"
kind = "overlap"
attribute = "maps"

[[modes.ranked.rules]]
name = "level-gap"
kind = "distance"
attribute = "level"
max = 10
expand = [{after_s = 20, max = 20}, {after_s = 60, max = 1000}]

[modes.ranked.latency]
max_ms = 80
expand = [{after_s = 15, max_ms = 120}, {after_s = 45, max_ms = 200}]

[modes.royale]
teams = 1
min_team_size = 20
max_team_size = 40
fill_wait_s = 30

[modes.custom]
team_size = 3
teams = 2
match_function = "tests.match_function_example:pair_by_level"

[modes.custom.attributes]
level = "number"
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def parse(tmp_path: Path, text: str):
    return load(["--config", str(write(tmp_path, text))], {})


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'config.toml'}: ")
    return message.split(": ", 1)[1]


def test_the_spec_example_parses_to_the_expected_values(tmp_path):
    config = parse(tmp_path, SPEC_EXAMPLE)
    assert config.regions == ("eu-west", "us-east")
    ranked = config.modes["ranked"]
    assert ranked == ModeConfig(
        name="ranked", team_size=5, teams=2, accept_timeout_s=15.0,
        attributes=(("build", "string"), ("maps", "string_list"), ("level", "number")),
        roles=(("tank", 1), ("healer", 1), ("dps", 3)),
        rules=(Rule("same-build", "same", "build"), Rule("common-map", "overlap", "maps"),
               Rule("level-gap", "distance", "level", 10.0, (Step(20.0, 20.0), Step(60.0, 1000.0)))),
        latency=Latency(80.0, (Step(15.0, 120.0), Step(45.0, 200.0))),
    )
    assert ranked.rules[2].limit(0) == 10 and ranked.rules[2].limit(25) == 20 and ranked.rules[2].limit(60) == 1000
    assert ranked.latency is not None and ranked.latency.limit(50) == 200
    royale = config.modes["royale"]
    assert (royale.teams, royale.team_size, royale.min_team_size, royale.fill_wait_s) == (1, 40, 20, 30.0)
    assert royale.players_per_match == 40
    custom = config.modes["custom"]
    assert custom.match_function == "tests.match_function_example:pair_by_level"
    assert custom.attributes == (("level", "number"),) and custom.rules == () and custom.roles == ()
    # The matcher's view of the same modes.
    rules = MatchRules.from_mode(ranked, config.regions)
    assert rules.regions == ("eu-west", "us-east") and not rules.plain
    assert MatchRules.from_mode(royale).smallest_team == 20


def test_plain_modes_keep_their_defaults(tmp_path):
    mode = parse(tmp_path, "[modes.duel]\n").modes["duel"]
    assert (mode.min_team_size, mode.fill_wait_s, mode.attributes, mode.roles, mode.rules, mode.latency,
            mode.match_function) == (None, 0.0, (), (), (), None, None)


def test_max_team_size_alone_and_equal_bounds_are_a_fixed_size(tmp_path):
    config = parse(tmp_path, "[modes.a]\nmax_team_size = 4\n[modes.b]\nmin_team_size = 3\nmax_team_size = 3\n")
    assert (config.modes["a"].team_size, config.modes["a"].min_team_size) == (4, None)
    assert (config.modes["b"].team_size, config.modes["b"].min_team_size) == (3, None)


def test_variable_sizes_without_fill_wait_and_distance_on_mmr_are_accepted(tmp_path):
    mode = parse(tmp_path, """
[modes.squads]
teams = 4
min_team_size = 1
max_team_size = 4
[[modes.squads.rules]]
name = "tight.mmr_v2"
kind = "distance"
attribute = "mmr"
max = 0
expand = [{after_s = 10, max = 0}, {after_s = 10.5, max = 50}]
""").modes["squads"]
    assert (mode.team_size, mode.min_team_size, mode.fill_wait_s) == (4, 1, 0.0)
    assert mode.rules == (Rule("tight.mmr_v2", "distance", "mmr", 0.0, (Step(10.0, 0.0), Step(10.5, 50.0))),)


def test_an_empty_expansion_is_no_expansion(tmp_path):
    mode = parse(tmp_path, REGIONS + "[modes.m]\n[modes.m.latency]\nmax_ms = 50\nexpand = []\n").modes["m"]
    assert mode.latency == Latency(50.0, ())


def test_a_lobby_of_one_team_is_accepted(tmp_path):
    assert parse(tmp_path, "[modes.lobby]\nteams = 1\nteam_size = 8\n").modes["lobby"].players_per_match == 8


ATTRS = '[modes.ranked.attributes]\nbuild = "string"\nmaps = "string_list"\nlevel = "number"\n'


def rule(*lines: str) -> str:
    return "[[modes.ranked.rules]]\n" + "".join(line + "\n" for line in lines)


LEVEL_GAP = ('name = "level-gap"', 'kind = "distance"', 'attribute = "level"', "max = 10")


@pytest.mark.parametrize("text, expected", [
    # rule kinds and keys
    (ATTRS + rule('name = "r"', 'kind = "near"', 'attribute = "level"'),
     "modes.ranked.rules[0] \"r\": unknown kind 'near' (known: same, overlap, distance)"),
    (ATTRS + rule('kind = "same"', 'attribute = "build"'), "modes.ranked.rules[0]: missing key 'name'"),
    (ATTRS + rule('name = "r"', 'attribute = "build"'), "modes.ranked.rules[0] \"r\": missing key 'kind'"),
    (ATTRS + rule('name = "r"', 'kind = "same"'), "modes.ranked.rules[0] \"r\": missing key 'attribute'"),
    (ATTRS + rule('name = "r"', 'kind = "distance"', 'attribute = "level"'),
     "modes.ranked.rules[0] \"r\": missing key 'max' (a distance rule's largest gap)"),
    (ATTRS + rule('name = "r"', 'kind = "same"', 'attribute = "build"', "colour = 1"),
     "modes.ranked.rules[0] \"r\": unknown key 'colour' (known: name, kind, attribute)"),
    (ATTRS + rule(*LEVEL_GAP, "weight = 2"),
     "modes.ranked.rules[0] \"level-gap\": unknown key 'weight' (known: name, kind, attribute, max, expand)"),
    (ATTRS + rule('name = "r"', 'kind = "same"', 'attribute = "build"', "max = 3"),
     "modes.ranked.rules[0] \"r\": 'max' applies only to distance rules, not same"),
    (ATTRS + rule('name = "r"', 'kind = "overlap"', 'attribute = "maps"', "expand = [{after_s = 1, max = 2}]"),
     "modes.ranked.rules[0] \"r\": 'expand' applies only to distance rules, not overlap"),
    ("[modes.ranked]\nrules = 'same'\n", "modes.ranked.rules: expected [[rules]] tables (name, kind, attribute)"),
    # attributes the rules read
    (ATTRS + rule('name = "level-gap"', 'kind = "distance"', 'attribute = "lvl"', "max = 10"),
     "modes.ranked.rules[0] \"level-gap\": attribute 'lvl' is not declared in [modes.ranked.attributes]"),
    (rule('name = "same-build"', 'kind = "same"', 'attribute = "build"'),
     "modes.ranked.rules[0] \"same-build\": attribute 'build' is not declared in [modes.ranked.attributes]"),
    (ATTRS + rule('name = "r"', 'kind = "same"', 'attribute = "maps"'),
     "modes.ranked.rules[0] \"r\": attribute 'maps' is a string_list; same rules read a string or number"),
    (ATTRS + rule('name = "r"', 'kind = "overlap"', 'attribute = "build"'),
     "modes.ranked.rules[0] \"r\": attribute 'build' is a string; overlap rules read a string_list"),
    (ATTRS + rule('name = "r"', 'kind = "distance"', 'attribute = "build"', "max = 1"),
     "modes.ranked.rules[0] \"r\": attribute 'build' is a string; distance rules read a number or 'mmr'"),
    (ATTRS + rule('name = "r"', 'kind = "same"', 'attribute = "mmr"'),
     "modes.ranked.rules[0] \"r\": attribute 'mmr' (the ticket's MMR) suits only distance rules"),
    # rule names
    (ATTRS + rule(*LEVEL_GAP) + rule(*LEVEL_GAP),
     "modes.ranked.rules[1] \"level-gap\": rules[0] has the same name"),
    *[(ATTRS + rule(f'name = "{name}"', 'kind = "same"', 'attribute = "build"'),
       f"modes.ranked.rules[0] \"{name}\": the rule name '{name}' is reserved")
      for name in ("mmr", "latency", "roles", "players")],
    (ATTRS + rule('name = "level gap"', 'kind = "same"', 'attribute = "build"'),
     "modes.ranked.rules[0]: a rule name is 1-64 letters, digits, '_', '.' or '-', got 'level gap'"),
    (ATTRS + rule('name = ""', 'kind = "same"', 'attribute = "build"'), "modes.ranked.rules[0]: a rule name is"),
    (ATTRS + rule(f'name = "{"x" * 65}"', 'kind = "same"', 'attribute = "build"'), "modes.ranked.rules[0]: a rule name is"),
    (ATTRS + rule("name = 7", 'kind = "same"', 'attribute = "build"'), "modes.ranked.rules[0]: a rule name is"),
    # limits and expansions
    (ATTRS + rule('name = "g"', 'kind = "distance"', 'attribute = "level"', "max = -1"),
     "modes.ranked.rules[0] \"g\": max: expected a finite number >= 0, got -1"),
    (ATTRS + rule('name = "g"', 'kind = "distance"', 'attribute = "level"', "max = inf"),
     "modes.ranked.rules[0] \"g\": max: expected a finite number >= 0, got inf"),
    (ATTRS + rule('name = "g"', 'kind = "distance"', 'attribute = "level"', "max = nan"),
     "modes.ranked.rules[0] \"g\": max: expected a finite number >= 0, got nan"),
    (ATTRS + rule('name = "g"', 'kind = "distance"', 'attribute = "level"', "max = '10'"),
     "modes.ranked.rules[0] \"g\": max: expected a number, got '10'"),
    (ATTRS + rule(*LEVEL_GAP, "expand = [{after_s = 20, max = 5}]"),
     "modes.ranked.rules[0] \"level-gap\": expand[0]: max 5 is below the base 10: an expansion only widens"),
    (ATTRS + rule(*LEVEL_GAP, "expand = [{after_s = 20, max = 30}, {after_s = 40, max = 25}]"),
     "modes.ranked.rules[0] \"level-gap\": expand[1]: max 25 is below the previous step's 30: an expansion only widens"),
    (ATTRS + rule(*LEVEL_GAP, "expand = [{after_s = 0, max = 30}]"),
     "modes.ranked.rules[0] \"level-gap\": expand[0]: after_s (0) must be greater than 0"),
    (ATTRS + rule(*LEVEL_GAP, "expand = [{after_s = 30, max = 30}, {after_s = 30, max = 40}]"),
     "modes.ranked.rules[0] \"level-gap\": expand[1]: after_s (30) must be greater than the previous step's (30)"),
    (ATTRS + rule(*LEVEL_GAP, "expand = [{after_s = 30, max = 30}, {after_s = 20, max = 40}]"),
     "modes.ranked.rules[0] \"level-gap\": expand[1]: after_s (20) must be greater than the previous step's (30)"),
    (ATTRS + rule(*LEVEL_GAP, "expand = [{after_s = -5, max = 30}]"),
     "modes.ranked.rules[0] \"level-gap\": expand[0].after_s: expected a finite number >= 0, got -5"),
    (ATTRS + rule(*LEVEL_GAP, "expand = [{after_s = 5, max = inf}]"),
     "modes.ranked.rules[0] \"level-gap\": expand[0].max: expected a finite number >= 0, got inf"),
    (ATTRS + rule(*LEVEL_GAP, "expand = [{after_s = 5, max_ms = 30}]"),
     "modes.ranked.rules[0] \"level-gap\": expand[0]: expected {after_s = S, max = N}"),
    (ATTRS + rule(*LEVEL_GAP, "expand = [{after_s = 5}]"),
     "modes.ranked.rules[0] \"level-gap\": expand[0]: expected {after_s = S, max = N}"),
    (ATTRS + rule(*LEVEL_GAP, "expand = {after_s = 5, max = 20}"),
     "modes.ranked.rules[0] \"level-gap\": expand: expected a list of {after_s = S, max = N} tables"),
    # latency
    (REGIONS + "[modes.ranked.latency]\nmax_ms = -1\n",
     "modes.ranked.latency.max_ms: expected a finite number >= 0, got -1"),
    (REGIONS + "[modes.ranked.latency]\nmax_ms = 80\nexpand = [{after_s = 15, max_ms = 60}]\n",
     "modes.ranked.latency.expand[0]: max_ms 60 is below the base 80: an expansion only widens"),
    (REGIONS + "[modes.ranked.latency]\nexpand = []\n", "modes.ranked.latency: missing key 'max_ms'"),
    (REGIONS + "[modes.ranked.latency]\nmax_ms = 80\nmin_ms = 1\n",
     "modes.ranked.latency: unknown key 'min_ms' (known: max_ms, expand)"),
    ("[modes.ranked.latency]\nmax_ms = 80\n",
     "modes.ranked.latency: needs [regions] names (the regions a match may be placed in)"),
    # attributes
    ("[modes.ranked.attributes]\nlevel = \"int\"\n",
     "modes.ranked.attributes.level: expected one of 'string', 'number', 'string_list', got 'int'"),
    ("[modes.ranked.attributes]\nmmr = \"number\"\n",
     "modes.ranked.attributes: the attribute name 'mmr' is reserved (the ticket's MMR)"),
    ("[modes.ranked.attributes]\n'dash-name' = \"number\"\n",
     "modes.ranked.attributes: an attribute name is 1-32 letters, digits or '_', got 'dash-name'"),
    ("[modes.ranked.attributes]\n" + "".join(f'a{i} = "number"\n' for i in range(17)),
     "modes.ranked.attributes: declares 17 attributes, at most 16 are allowed"),
    ("[modes.ranked]\nattributes = ['level']\n", "modes.ranked.attributes: expected a table of name = "),
    # roles
    ("[modes.ranked]\nteam_size = 5\n[modes.ranked.roles]\ntank = 1\nhealer = 1\ndps = 2\n",
     "modes.ranked.roles: role counts add up to 4, the team size is 5"),
    ("[modes.ranked]\nmin_team_size = 3\nmax_team_size = 5\n[modes.ranked.roles]\ntank = 1\ndps = 4\n",
     "modes.ranked.roles: roles need a fixed team size, not min_team_size 3 below max_team_size 5"),
    ("[modes.ranked]\nteam_size = 2\n[modes.ranked.roles]\ntank = 0\ndps = 2\n",
     "modes.ranked.roles.tank: must be at least 1, got 0"),
    ("[modes.ranked.roles]\n'the tank' = 1\n",
     "modes.ranked.roles: a role name is 1-32 letters, digits, '_' or '-', got 'the tank'"),
    ("[modes.ranked]\nteam_size = 17\n[modes.ranked.roles]\n" + "".join(f"r{i} = 1\n" for i in range(17)),
     "modes.ranked.roles: declares 17 roles, at most 16 are allowed"),
    ("[modes.ranked.roles]\n", "modes.ranked.roles: expected a table of role = count (players per team)"),
    # team shapes
    ("[modes.ranked]\nteams = 0\n", "modes.ranked.teams: must be at least 1, got 0"),
    ("[modes.ranked]\nmin_team_size = 6\nmax_team_size = 5\n",
     "modes.ranked: min_team_size (6) is above max_team_size (5)"),
    ("[modes.ranked]\nteam_size = 5\nmax_team_size = 5\n",
     "modes.ranked: set team_size, or max_team_size (with min_team_size), not both"),
    ("[modes.ranked]\nteam_size = 5\nmin_team_size = 2\n",
     "modes.ranked: set team_size, or max_team_size (with min_team_size), not both"),
    ("[modes.ranked]\nmin_team_size = 2\n", "modes.ranked: min_team_size needs max_team_size"),
    ("[modes.ranked]\nteam_size = 5\nfill_wait_s = 30\n",
     "modes.ranked: fill_wait_s needs a variable team size (min_team_size below max_team_size)"),
    ("[modes.ranked]\nmin_team_size = 5\nmax_team_size = 5\nfill_wait_s = 30\n",
     "modes.ranked: fill_wait_s needs a variable team size (min_team_size below max_team_size)"),
    ("[modes.ranked]\nmin_team_size = 2\nmax_team_size = 5\nfill_wait_s = -1\n",
     "modes.ranked.fill_wait_s: expected a finite number >= 0, got -1"),
    ("[modes.ranked]\nmax_team_size = 0\n", "modes.ranked.max_team_size: must be at least 1, got 0"),
    # match functions
    ("[modes.ranked]\nmatch_function = 'tests.match_function_example:pair_by_level'\n" + ATTRS
     + rule(*LEVEL_GAP),
     "modes.ranked: match_function owns the mode's matching rules; remove rules (attributes may stay, "
     "for the function to read)"),
    ("[modes.ranked]\nteam_size = 2\nmatch_function = 'tests.match_function_example:pair_by_level'\n"
     "[modes.ranked.roles]\ntank = 1\ndps = 1\n", "modes.ranked: match_function owns the mode's matching rules; "
     "remove roles"),
    (REGIONS + "[modes.ranked]\nmatch_function = 'tests.match_function_example:pair_by_level'\n"
     "[modes.ranked.latency]\nmax_ms = 80\n", "modes.ranked: match_function owns the mode's matching rules; "
     "remove latency"),
    ("[modes.ranked]\nmatch_function = 'tests.no_such_module:propose'\n",
     "modes.ranked.match_function: cannot import module 'tests.no_such_module': ModuleNotFoundError: "
     "No module named 'tests.no_such_module'"),
    ("[modes.ranked]\nmatch_function = 'tests.match_function_example:missing'\n",
     "modes.ranked.match_function: module 'tests.match_function_example' has no attribute 'missing'"),
    ("[modes.ranked]\nmatch_function = 'tests.match_function_example:MAX_GAP'\n",
     "modes.ranked.match_function: tests.match_function_example:MAX_GAP is not callable (a float)"),
    ("[modes.ranked]\nmatch_function = 'pair_by_level'\n",
     "modes.ranked.match_function: expected \"module:function\" (e.g. \"mygame.matching:propose\"), "
     "got 'pair_by_level'"),
])
def test_refusals_name_the_mode_and_the_rule(tmp_path, text, expected):
    if not text.lstrip().startswith(("[modes.ranked]", REGIONS.strip())):
        text = "[modes.ranked]\n" + text
    assert refusal(tmp_path, text).startswith(expected)


def test_a_match_function_that_fails_to_import_is_refused_with_its_error(tmp_path, monkeypatch):
    (tmp_path / "bad_matching.py").write_text("def propose(tickets, mode, now):\n    return [\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = refusal(tmp_path, "[modes.custom]\nmatch_function = 'bad_matching:propose'\n")
    assert message.startswith("modes.custom.match_function: cannot import module 'bad_matching': SyntaxError: ")


def test_a_match_function_module_that_calls_sys_exit_is_refused(tmp_path, monkeypatch):
    (tmp_path / "exiting_matching.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = refusal(tmp_path, "[modes.custom]\nmatch_function = 'exiting_matching:propose'\n")
    assert message == "modes.custom.match_function: cannot import module 'exiting_matching': SystemExit: 3"


def test_unknown_mode_keys_list_the_new_ones(tmp_path):
    message = refusal(tmp_path, "[modes.ranked]\nrule = []\n")
    assert message.startswith("modes.ranked: unknown option 'rule'")
    for key in ("min_team_size", "max_team_size", "fill_wait_s", "attributes", "roles", "rules", "latency",
                "match_function"):
        assert key in message


def test_the_command_exits_2_with_one_line_for_a_bad_rule(tmp_path):
    path = write(tmp_path, "[modes.ranked]\n" + ATTRS + rule(
        'name = "level-gap"', 'kind = "distance"', 'attribute = "lvl"', "max = 10"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSERVER_")}
    env["MMSERVER_CONFIG"] = str(path)
    result = subprocess.run([sys.executable, "-m", "mmserver"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"mmserver: error: {path}: modes.ranked.rules[0] \"level-gap\": attribute 'lvl' is not "
                     f"declared in [modes.ranked.attributes]"], result.stderr


def test_the_documented_configuration_parses():
    """docs/MATCH_RULES.md's worked configuration is a real one."""
    import re
    import tomllib
    from pathlib import Path

    from mmserver.config import parse_config_document

    text = (Path(__file__).resolve().parents[2] / "docs" / "MATCH_RULES.md").read_text()
    block = re.search(r"## A worked configuration\n\n```toml\n(.*?)```", text, re.S).group(1)
    parsed = parse_config_document(tomllib.loads(block), "docs")
    ranked = parsed["modes"]["ranked"]
    assert [r.name for r in ranked.rules] == ["same-build", "common-map", "level-gap"]
    assert ranked.roles == (("tank", 1), ("healer", 1), ("dps", 3))
    assert ranked.latency.max_ms == 80
    royale = parsed["modes"]["royale"]
    assert (royale.teams, royale.min_team_size, royale.team_size, royale.fill_wait_s) == (1, 20, 40, 30)
