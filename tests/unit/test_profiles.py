"""A match's choices as the claim stores them: the direct encoding against json's."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmserver.matchmaking import Proposal
from mmserver.store.profiles import decode_choices, encode_choices, encode_roles
from mmserver.ticker import _choices

# The API's alphabet, and characters JSON escapes or the record may not hold.
TEXT = st.text(alphabet=st.sampled_from('ab-_.:09Z "\\|\x01é\u2028'), min_size=0, max_size=6)


def reference(region, players, roles, attributes):
    try:
        return encode_choices(region, dict(zip(players, roles)), attributes)
    except ValueError:
        return ValueError


@given(st.one_of(st.none(), st.sampled_from(["", "eu"])), st.lists(TEXT, max_size=6), st.lists(TEXT, max_size=6),
       st.dictionaries(TEXT, TEXT, max_size=2))
def test_roles_encode_as_json_writes_them(region, players, roles, attributes):
    # Unequal lists pair as zip does.
    expected = reference(region, players, roles, attributes)
    if expected is ValueError:
        with pytest.raises(ValueError):
            encode_roles(region, players, roles, attributes)
    else:
        assert encode_roles(region, players, roles, attributes) == expected


def test_plain_ids_take_the_direct_path_and_decode_back():
    text = encode_roles("eu", ["p-1", "q.2:x"], ["tank", "dps"], {})
    assert text == 'eu|{"r":{"p-1":"tank","q.2:x":"dps"}}'
    assert decode_choices(text.split("|", 1)[1]) == ({"p-1": "tank", "q.2:x": "dps"}, {})


@given(st.lists(st.tuples(st.lists(TEXT, max_size=3), st.lists(TEXT, max_size=3)), max_size=4),
       st.booleans())
def test_choices_pair_each_ticket_s_players_with_its_roles_as_zip_does(tickets, one_missing):
    # Tickets whose players and roles differ in number, or missing from the read, pair as zip.
    players = {f"t{k}": tuple(of_ticket) for k, (of_ticket, _) in enumerate(tickets)}
    if one_missing and players:
        players.pop("t0")
    roles = {f"t{k}": tuple(per_player) for k, (_, per_player) in enumerate(tickets)}
    proposal = Proposal((tuple(roles),), 0.0, "eu", roles, {})
    by_player = {player: role for ticket_id, per_player in roles.items()
                 for player, role in zip(players.get(ticket_id, ()), per_player)}
    try:
        expected = encode_choices("eu", by_player, {})
    except ValueError:
        with pytest.raises(ValueError):
            _choices([proposal], players)
        return
    assert _choices([proposal], players) == [expected]
