"""Invented patients and studies, with everything a hospital header would carry about them,
and the seeded random streams and UIDs the whole sample is drawn from.

Every identity value is >= 4 characters and unlike any generic header text, so tests can search
ingest outputs for each of them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import numpy as np

from medspark.sample.anatomy import Body, random_body

FAMILY = ("HOLLOWAY", "KOWALSKI", "NAKAMURA", "OKAFOR", "FITZGERALD", "LINDQVIST", "ABERNATHY",
          "MORETTI", "HADDAD", "VARGAS", "SORENSEN", "PETROVIC", "DELACROIX", "ACHTERBERG",
          "QUINTERO", "BLACKWOOD", "ESPINOZA", "RASMUSSEN", "TANAKA", "OYELOWO")
GIVEN = (("JANE", "F"), ("MARGARET", "F"), ("PRIYA", "F"), ("CORNELIA", "F"), ("FENELLA", "F"),
         ("BEATRIX", "F"), ("YOLANDA", "F"), ("WINIFRED", "F"), ("HENRIETTA", "F"),
         ("IMOGEN", "F"), ("ODALYS", "F"), ("TOBIAS", "M"), ("RAFAEL", "M"), ("DESMOND", "M"),
         ("AUGUSTIN", "M"), ("LEOPOLD", "M"), ("OSWALD", "M"), ("EZEKIEL", "M"),
         ("THADDEUS", "M"), ("CORMAC", "M"), ("BARNABY", "M"))
PHYSICIANS = (("HARTWELL", "EVELYN"), ("OYELARAN", "MATTHIAS"), ("SZYMANSKI", "ROLAND"),
              ("VANTERPOOL", "GRETA"), ("KAPOOR", "ANJALI"), ("BRENNAN", "LORCAN"))
OPERATORS = (("MACALLISTER", "RHONA"), ("TREMBLAY", "JOLENE"), ("OKONKWO", "CHIDI"),
             ("ISAKSEN", "BRYNJA"))
STREETS = ("QUARRY HILL RD", "WILLOWBROOK LN", "BRAMBLEWOOD CT", "LARKSPUR AVE",
           "OLD MILL PIKE", "HEATHERSTONE DR", "CORMORANT WAY", "JUNIPER RIDGE RD")
CITIES = (("MILLBROOK", "NY", "12545"), ("ASHBOURNE", "OH", "44012"),
          ("CEDAR FALLS", "IA", "50613"), ("PORT ELLERY", "ME", "04011"))
INSTITUTIONS = (("FAIRHAVEN GENERAL HOSPITAL", "200 HARBOR VIEW BLVD, FAIRHAVEN MA 02719", "FGH"),
                ("ST. BRENDAN MEDICAL CENTER", "77 CLOISTER AVE, DUNMORE PA 18512", "SBMC"),
                ("LAKESHORE VALLEY CLINIC", "1350 SHORELINE DR, TRAVERSE BAY MI 49684", "LVC"))
AREA_CODES = ("617", "415", "312", "206", "503", "704")
STUDY_EPOCH = dt.date(2024, 1, 8)
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medspark:sample")


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent stream per (seed, keys): slices can be regenerated one at a time."""
    return np.random.default_rng([seed % 2**63, *keys])


def uid_for(seed: int, *parts: object) -> str:
    """A `2.25.<uuid>` UID from a name-based (SHA-1, RFC 4122 v5) UUID of the seed and parts.

    Stable across runs, unlike `pydicom.uid.generate_uid(prefix=None, ...)`, which ignores its
    entropy sources and returns a random UUID.
    """
    name = "/".join(["medspark-sample", str(seed), *map(str, parts)])
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


@dataclass(frozen=True)
class Patient:
    """One invented patient with everything a hospital header would carry about them."""

    index: int
    family: str
    given: str
    sex: str
    patient_id: str
    birth_date: str
    address: str
    phone: str
    physician: tuple[str, str]
    operator: tuple[str, str]
    institution: tuple[str, str, str]
    device_serial: str
    body: Body
    fov_mm: float

    @property
    def name(self) -> str:
        return f"{self.family}^{self.given}"

    @property
    def station(self) -> str:
        return f"{self.institution[2]}-CT0{1 + self.index % 3}"

    def phi(self) -> set[str]:
        """Every identifying string of this patient that a header may carry."""
        return {self.name, self.family, self.given, f"{self.given} {self.family}",
                self.patient_id, self.birth_date, self.address, self.phone,
                f"{self.physician[0]}^{self.physician[1]}^^DR", *self.physician,
                f"{self.operator[0]}^{self.operator[1]}", *self.operator,
                self.institution[0], self.institution[1], self.station, self.device_serial}


@dataclass(frozen=True)
class Study:
    """One imaging study of a patient (a visit): what its headers say about it."""

    uid: str
    date: str
    time: str
    accession: str
    study_id: str
    description: str


def make_patients(n: int, seed: int) -> list[Patient]:
    """`n` distinct invented patients (names, MRNs, addresses, ...) drawn from the seed."""
    rng = rng_for(seed, 1)
    family, given = rng.permutation(len(FAMILY)), rng.permutation(len(GIVEN))
    mrns = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    institutions = rng.permutation(len(INSTITUTIONS))
    out = []
    for i in range(n):
        r = rng_for(seed, 2, i)
        name, sex = GIVEN[given[(i + i // len(FAMILY)) % len(GIVEN)]]
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(r.integers(0, 55 * 365)))
        city, state, zip_code = CITIES[int(r.integers(len(CITIES)))]
        street = STREETS[int(r.integers(len(STREETS)))]
        out.append(Patient(
            index=i, family=FAMILY[family[i % len(FAMILY)]], given=name, sex=sex,
            patient_id=f"MRN{int(mrns[i]):07d}", birth_date=birth.strftime("%Y%m%d"),
            address=f"{int(r.integers(100, 9900))} {street}, {city} {state} {zip_code}",
            phone=f"({AREA_CODES[int(r.integers(len(AREA_CODES)))]}) 555-"
                  f"{int(r.integers(1000, 10000))}",
            physician=PHYSICIANS[int(r.integers(len(PHYSICIANS)))],
            operator=OPERATORS[int(r.integers(len(OPERATORS)))],
            institution=INSTITUTIONS[institutions[i % len(INSTITUTIONS)]],
            device_serial=f"SN{48000 + 317 * institutions[i % len(INSTITUTIONS)]:06d}",
            body=random_body(r), fov_mm=float(10 * r.integers(32, 41))))
    return out


def make_study(patient: Patient, number: int, seed: int, accession: int) -> Study:
    """Study `number` of a patient; a follow-up (number > 0) is 3-7 months after the first."""
    first = int(rng_for(seed, 3, patient.index).integers(0, 200))
    r = rng_for(seed, 3, patient.index, number)
    day = STUDY_EPOCH + dt.timedelta(days=first + number * int(r.integers(90, 210)))
    kind = "CT CHEST FOR" if number == 0 else "CT CHEST FOLLOW-UP FOR"
    return Study(uid=uid_for(seed, "study", patient.index, number), date=day.strftime("%Y%m%d"),
                 time=f"{int(r.integers(7, 18)):02d}{int(r.integers(0, 60)):02d}"
                      f"{int(r.integers(0, 60)):02d}",
                 accession=f"ACC{accession:07d}", study_id=f"S{int(r.integers(10000, 99999))}",
                 description=f"{kind} {patient.given} {patient.family}")
