"""Keyed pseudonyms and per-patient date shifts."""

from __future__ import annotations

import datetime as dt

import pytest

from medspark.privacy.pseudonym import (
    DEMO_KEY,
    KEY_ENV,
    MissingKeyError,
    Pseudonymizer,
    parse_da,
    resolve_key,
)


def test_pseudonyms_are_keyed_deterministic_and_namespaced():
    a, b = Pseudonymizer(b"k1"), Pseudonymizer(b"k2")
    assert a.pseudonym("patient", "PAT-001") == a.pseudonym("patient", " PAT-001 ")
    assert a.pseudonym("patient", "PAT-001") != b.pseudonym("patient", "PAT-001")
    assert a.pseudonym("patient", "X") != a.pseudonym("study", "X")
    assert "PAT-001" not in a.pseudonym("patient", "PAT-001")
    assert a.pseudonym("patient", None) is None and a.pseudonym("patient", "  ") is None
    assert len(a.pseudonym("patient", "PAT-001")) == 32


def test_date_shift_keeps_intervals_within_a_patient():
    p = Pseudonymizer(b"k", max_shift_days=30)
    d1, d2 = p.shift_date("20240101", "P1"), p.shift_date("20240315", "P1")
    assert (d2 - d1) == dt.date(2024, 3, 15) - dt.date(2024, 1, 1)
    assert d1 != dt.date(2024, 1, 1)
    assert -30 <= p.shift_days("P1") <= -1
    shifts = {p.shift_days(f"P{i}") for i in range(50)}
    assert len(shifts) > 10  # patients get different offsets


def test_parse_da():
    assert parse_da("20240229") == dt.date(2024, 2, 29)
    assert parse_da("2024.02.29") == dt.date(2024, 2, 29)
    assert parse_da("20240230") is None and parse_da("") is None and parse_da(None) is None


def test_resolve_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(MissingKeyError, match=KEY_ENV):
        resolve_key()
    assert resolve_key(allow_demo_key=True) == DEMO_KEY.encode()
    monkeypatch.setenv(KEY_ENV, "secret")
    assert resolve_key() == b"secret"
