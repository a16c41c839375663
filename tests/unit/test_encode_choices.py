"""encode_choices: a match's choices as claim.lua stores them (the session's mx)."""
import json

import pytest

from mmserver.store import profiles


@pytest.mark.parametrize("region, roles, attributes", [
    (None, {}, {}),
    ("eu-west", {}, {}),
    (None, {"p1": "tank", "p2": "dps"}, {}),
    ("ap-south", {"p1": "tank", "joueur-\u00e9\u00e8": "healer", 'q"\\\t': "dps", "\U0001f600": "dps"},
     {"map": "dust", "mode": "\u00fcber"}),
    ("", {}, {"n": "1.5"}),
])
def test_the_text_is_the_plain_encoders(region, roles, attributes):
    """Built with the C encoder made once (profiles._CHOICES_DUMPS), the text is exactly
    what json's JSONEncoder(separators=(',', ':'), ensure_ascii=True) gives."""
    text = profiles.encode_choices(region, roles, attributes)
    if not region and not roles and not attributes:
        assert text == ""
        return
    document = {}
    if roles:
        document["r"] = roles
    if attributes:
        document["a"] = attributes
    plain = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode(document) if document else ""
    assert text == f"{region or ''}|{plain}"
    assert profiles.decode_choices(text.split("|", 1)[1]) == (roles, attributes)


def test_a_value_json_cannot_encode_is_refused_as_before():
    with pytest.raises(TypeError):
        profiles.encode_choices("eu", {"p1": object()}, {})
