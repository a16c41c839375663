"""The one bearer reading and secret comparison shared by the public API and the control plane."""
from mmserver.credentials import SecretSet, bearer_token


def test_bearer_token_reads_the_scheme_case_insensitively():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer abc") == "abc"
    assert bearer_token("  BEARER   abc  ") == "abc"


def test_bearer_token_refuses_other_schemes_and_malformed_values():
    for header in (None, "", "Basic abc", "Bearer", "Bearer ", "Bearer a b", "Token abc", "abc"):
        assert bearer_token(header) is None, header


def test_secret_set_matches_any_key_of_a_rotation():
    keys = SecretSet(["old-key-0123456789", "new-key-0123456789"])
    assert keys.matches("old-key-0123456789")
    assert keys.matches("new-key-0123456789")
    assert not keys.matches("new-key-012345678")
    assert not keys.matches("")
    assert not keys.matches(None)
    assert len(keys) == 2


def test_secret_set_compares_any_header_text():
    keys = SecretSet(["k\u00e9y-0123456789abcdef"])
    assert keys.matches("k\u00e9y-0123456789abcdef")
    assert not keys.matches("\udcff")  # a lone surrogate cannot crash the comparison


def test_secret_set_needs_a_secret():
    import pytest
    with pytest.raises(ValueError):
        SecretSet([])
