"""De-identification profile: which DICOM header attributes may leave the worker.

The rule is an allowlist by value representation, tightened by a denylist after DICOM PS3.15
Annex E (Basic Application Level Confidentiality Profile, table E.1-1):

- kept: public (even-group) top-level attributes whose VR is numeric or a code string (CS), plus
  a few LO/SH attributes that describe the device or protocol, never the person;
- dropped: every private tag, every person name, date, time, age, UID (except SOP class and
  transfer syntax UIDs, which name a kind of object), free text, sequence and binary value, and
  the numeric/CS attributes that table E.1-1 lists as identifying (sex, weight, size, ...).

`collect_phi` gathers every identifying string from a header so error messages can be scrubbed
of them (`scrub`) before they are written anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

KEEP_VRS = frozenset({"CS", "DS", "IS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
# LO/SH attributes that describe the equipment or acquisition, not the patient or the site.
ALLOWED_TEXT = frozenset({
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "ConvolutionKernel",
    "ContrastBolusAgent", "FilterType", "FocalSpots", "ScanOptions", "SeriesDescription",
    "SequenceName", "ReceiveCoilName", "TransmitCoilName", "WindowCenterWidthExplanation",
})
ALLOWED_UIDS = frozenset({"SOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID"})
# Numeric or CS attributes that PS3.15 E.1-1 treats as identifying or quasi-identifying.
DENY = frozenset({
    "PatientSex", "PatientWeight", "PatientSize", "PatientSexNeutered", "PregnancyStatus",
    "SmokingStatus", "EthnicGroup", "Occupation", "PatientAge", "PatientState",
    "SpecialNeeds", "AdditionalPatientHistory", "PatientReligiousPreference",
    "MilitaryRank", "BranchOfService", "ResponsibleOrganization", "PatientSpeciesDescription",
    "PatientBreedDescription", "IssuerOfPatientID", "TypeOfPatientID",
    "DeviceSerialNumber", "StationName", "InstitutionalDepartmentName", "PlateID",
    "CassetteID", "GantryID", "DetectorID", "SourceSerialNumber",
})
# Series descriptions are free text in practice too; only keep them when they look generic.
_GENERIC_TEXT = re.compile(r"^[A-Za-z0-9 _.,+\-/()%:]{0,64}$")
PHI_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "UR", "DA", "DT", "TM", "AS",
                     "AE", "UI"})
MAX_VALUE_CHARS = 256
_MIN_PHI_CHARS = 3


def _text(elem: DataElement) -> str | None:
    value = elem.value
    if value is None or value == "":
        return None
    if isinstance(value, bytes | bytearray):
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip()
    return text[:MAX_VALUE_CHARS] if text else None


def _kept(elem: DataElement) -> bool:
    keyword = elem.keyword
    if not keyword or elem.tag.is_private or elem.tag.group >= 0x6000:
        return False  # private, unknown, curves/overlays/pixel data groups
    if keyword in DENY:
        return False
    if keyword in ALLOWED_UIDS:
        return True
    if elem.VR in KEEP_VRS:
        return True
    return keyword in ALLOWED_TEXT


def filter_attributes(ds: Dataset, phi: set[str] | None = None) -> dict[str, str]:
    """Non-identifying top-level header attributes as `keyword -> string`.

    Text attributes on the allowlist are still dropped when their value contains any string
    that is identifying elsewhere in the same header (a series description naming the patient).
    `phi` is `collect_phi(ds)` when the caller already has it.
    """
    phi_upper = [p.upper() for p in (collect_phi(ds) if phi is None else phi) if len(p) >= 4]
    out: dict[str, str] = {}
    for elem in _top_level(ds):
        if not _kept(elem):
            continue
        text = _text(elem)
        if text is None:
            continue
        if elem.VR in ("LO", "SH"):
            upper = text.upper()
            if not _GENERIC_TEXT.match(text) or any(p in upper for p in phi_upper):
                continue
        out[elem.keyword] = text
    return out


def _top_level(ds: Dataset) -> Iterable[DataElement]:
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from meta
    yield from ds


def _phi_strings(elem: DataElement) -> Iterable[str]:
    if elem.VR == "SQ":
        return
    identifying = elem.tag.is_private or (elem.VR in PHI_VRS and elem.keyword not in ALLOWED_UIDS
                                          and elem.keyword not in ALLOWED_TEXT)
    if not identifying:
        return
    value = elem.value
    values = value if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" \
        else [value]
    for v in values:
        if isinstance(v, bytes | bytearray):  # private tags read as UN: look for text inside
            if elem.tag.is_private:
                yield from (t.strip() for t in re.findall(r"[ -~]{4,}", bytes(v).decode("latin-1")))
            continue
        if v is None:
            continue
        text = str(v).strip()
        if len(text) < _MIN_PHI_CHARS:
            continue
        yield text
        if elem.VR == "PN":  # name components appear on their own in free text
            yield from (c for c in re.split(r"[\^=\s]+", text) if len(c) >= _MIN_PHI_CHARS)


def collect_phi(ds: Dataset) -> set[str]:
    """Every identifying string in the header, nested sequences and private tags included."""
    found: set[str] = set()
    stack: list[Dataset] = [ds]
    while stack:
        current = stack.pop()
        for elem in current:
            if elem.VR == "SQ":
                stack.extend(item for item in (elem.value or []) if isinstance(item, Dataset))
                continue
            try:
                found.update(_phi_strings(elem))
            except Exception:  # noqa: BLE001, S112 - a malformed value cannot be PHI-checked
                continue
    return found


def scrub(message: str, phi: Iterable[str]) -> str:
    """`message` with every PHI string (case-insensitive) replaced by `[redacted]`."""
    for value in sorted({p for p in phi if len(p) >= _MIN_PHI_CHARS}, key=len, reverse=True):
        message = re.sub(re.escape(value), "[redacted]", message, flags=re.IGNORECASE)
    return message
