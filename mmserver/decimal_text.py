"""Whole numbers written in decimal by a client, a file or an operator: ASCII digits only.

str.isdigit() also takes '²' and other scripts' digits, which int() then refuses, and int()
raises on more than 4,300 digits: either was a 500 on the API, or a traceback at start. int()
alone would take '+1', ' 1' and '1_0' too. Every such text is read here, once.
"""
from __future__ import annotations


def parse_decimal(text: str, max_digits: int = 18) -> int | None:
    """The number `text` writes in 1 to `max_digits` ASCII digits (leading zeros count), or
    None. 18 digits stay within a 64-bit signed integer."""
    if not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()):
        return None
    return int(text)
