"""The one rule for codes and names (docs/codes-and-names.md)."""
from __future__ import annotations

import unicodedata

import pytest

from hexaflow.text import canonical_code, canonical_name

NFD = unicodedata.normalize("NFD", "Nguyễn")


@pytest.mark.parametrize("raw,code", [
    (" PAD-1 ", "PAD-1"),
    ("\tPAD-1\n", "PAD-1"),
    ("\u00a0PAD-1\u3000", "PAD-1"),                      # no-break and ideographic spaces
    (unicodedata.normalize("NFD", "ÁO-DÀI"), "ÁO-DÀI"),
    ("PAD  1", "PAD  1"),                                 # inner spaces are part of a code
    ("ao-m", "ao-m"),                                     # and so is its case
    ("", ""),
])
def test_a_code_is_trimmed_and_composed_and_nothing_else(raw, code):
    assert canonical_code(raw) == code
    assert unicodedata.is_normalized("NFC", canonical_code(raw))


@pytest.mark.parametrize("raw,name", [
    (f"  {NFD}   Lan ", "Nguyễn Lan"),
    ("Áo\tthun\n cotton", "Áo thun cotton"),
    ("Phạm\u00a0\u00a0Hoa", "Phạm Hoa"),
    ("   ", ""),
])
def test_a_name_is_trimmed_composed_and_its_spaces_collapsed(raw, name):
    assert canonical_name(raw) == name


@pytest.mark.parametrize("value", [None, 12, 3.5, True, ["a "], {"a": " b "}])
def test_values_that_are_not_text_are_kept(value):
    assert canonical_code(value) == value and canonical_name(value) == value
