"""Decimal text from clients, files and operators (mmserver/decimal_text.py)."""
from __future__ import annotations

import pytest

from mmserver.decimal_text import parse_decimal


@pytest.mark.parametrize("text, number", [("0", 0), ("7", 7), ("007", 7), ("9" * 18, 10 ** 18 - 1)])
def test_ascii_digits_read_as_their_number(text, number):
    assert parse_decimal(text) == number


@pytest.mark.parametrize("text", ["", "²", "٣", "+1", "-1", " 1", "1 ", "1_0", "1.0", "0x1", "1" * 19, "1" * 5000])
def test_anything_else_is_none(text):
    assert parse_decimal(text) is None


def test_the_digit_bound_is_the_callers():
    assert parse_decimal("65535", 5) == 65535 and parse_decimal("065535", 5) is None
