"""Masking an outside system's words about a person: the shapes, and the subject's own values."""

from __future__ import annotations

import pytest

from vigil_shared.masking import scrub_subject

SSN, BIRTHDATE = "123-45-0750", "1980-02-03"


@pytest.mark.parametrize(
    "words",
    [
        "DOB 1980-02-03 does not match",
        "DOB 02/03/1980",
        "DOB 3.2.1980",
        "DOB 2/3/80",
        "no file for 19800203",
        "no file for 02031980",
        "born February 3rd, 1980",
        "born 3 Feb 1980",
        "born on 1980-02-03 12:00",
        "SSN 123.45.0750",
        "SSN 123 45 0750",
        "SSN 123450750",
        "card 4242 4242 4242 4242",
    ],
)
def test_the_subjects_ssn_and_birthdate_are_masked_in_any_form(words):
    shown = scrub_subject(words, SSN, BIRTHDATE)
    assert "***" in shown
    for value in ("1980", "0750", "4242", "Feb"):
        assert value not in shown


@pytest.mark.parametrize(
    "words",
    ["ref T-480231 (400)", "SSN ending 0750", "DOB Mar 3 1980", "Score model 2024-01-15", "Try again in 30 s."],
)
def test_other_words_are_kept(words):
    assert scrub_subject(words, SSN, BIRTHDATE) == words


def test_nothing_to_mask_without_words_or_values():
    assert scrub_subject(None, SSN, BIRTHDATE) is None
    assert scrub_subject("", SSN, BIRTHDATE) == ""
    assert scrub_subject("DOB 1980-02-03", None, None) == "DOB 1980-02-03"
