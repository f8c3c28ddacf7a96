"""Keyed HMAC pseudonyms and per-patient date shifts.

A pseudonym is HMAC-SHA256(key, namespace + ":" + value), so the same patient gets the same
pseudonym in every run and every table while nobody without the key can reverse or recompute it.
Dates are shifted by a per-patient offset derived from the same key, which keeps the intervals
between one patient's studies intact.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os

KEY_ENV = "MEDSPARK_PSEUDONYM_KEY"
DEMO_KEY = "medspark-DEMO-KEY-not-for-real-data"


class MissingKeyError(RuntimeError):
    """No pseudonym key was configured."""


def resolve_key(allow_demo_key: bool = False) -> bytes:
    """The pseudonymisation key from `MEDSPARK_PSEUDONYM_KEY`, or the demo key when allowed."""
    key = os.environ.get(KEY_ENV)
    if key:
        return key.encode()
    if allow_demo_key:
        return DEMO_KEY.encode()
    raise MissingKeyError(
        f"set {KEY_ENV} to a secret key (or privacy.allow_demo_key: true for sample data only)"
    )


class Pseudonymizer:
    """Deterministic keyed pseudonyms and date shifts for one key."""

    def __init__(self, key: bytes, max_shift_days: int = 365, length: int = 32):
        if max_shift_days < 1:
            raise ValueError("max_shift_days must be >= 1")
        self._key = key
        self.max_shift_days = max_shift_days
        self.length = length

    def _digest(self, namespace: str, value: str) -> bytes:
        return hmac.new(self._key, f"{namespace}:{value}".encode(), hashlib.sha256).digest()

    def pseudonym(self, namespace: str, value: str | None) -> str | None:
        """Hex pseudonym of `value` within `namespace` (patient, study, series, sop, accession)."""
        if value is None:
            return None
        value = str(value).strip()
        if not value:
            return None
        return self._digest(namespace, value).hex()[: self.length]

    def shift_days(self, patient_id: str | None) -> int:
        """Per-patient offset in [-max_shift_days, -1] days (never 0: no real date leaks)."""
        seed = int.from_bytes(self._digest("dateshift", patient_id or "")[:8], "big")
        return -1 - seed % self.max_shift_days

    def shift_date(self, value: str | None, patient_id: str | None) -> dt.date | None:
        """Parse a DICOM DA string (YYYYMMDD) and shift it by the patient's offset."""
        date = parse_da(value)
        if date is None:
            return None
        return date + dt.timedelta(days=self.shift_days(patient_id))


def parse_da(value: str | None) -> dt.date | None:
    """A DICOM DA value (YYYYMMDD, tolerating YYYY.MM.DD) as a date, None when unparseable."""
    if not value:
        return None
    digits = "".join(ch for ch in str(value) if ch.isdigit())[:8]
    if len(digits) != 8:
        return None
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None
