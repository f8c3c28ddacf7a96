"""Pure generators behind `medspark.sample`: anatomy in HU, nodules, 2D images, invented patients.

No real dataset can be downloaded, so the sample draws its own anatomy and identities. Nothing
here touches files, and everything is a deterministic function of its arguments (randomness only
through seeded `numpy.random.Generator`s, UIDs hashed from the seed): the writer in
`medspark.sample` can regenerate any slice, and tests can check pixel content without reading
files. Geometry is given as fractions of the image size, so the same patient looks the same at
128 and at 512 pixels.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass, replace

import cv2
import numpy as np

AIR, LUNG, FAT, SOFT, BLOOD, BONE, CORTEX = -1000, -850, -100, 40, 50, 650, 1000
HU_MIN, HU_MAX = -1024, 3071  # 12-bit stored values 0..4095 with intercept -1024
CHEST_MM = 300.0  # craniocaudal length that z in [0, 1] spans (0 = lung apex, 1 = base)
_SHIFT = 4  # OpenCV sub-pixel bits for drawing


@dataclass(frozen=True)
class Body:
    """A patient's habitus, as fractions of the image size (so it is resolution independent)."""

    width: float = 0.40  # half-axes of the body ellipse
    depth: float = 0.27
    fat: float = 0.025  # subcutaneous fat thickness
    lung_width: float = 0.32  # lung half-axes / offset, as fractions of the inner body axes
    lung_height: float = 0.72
    lung_offset: float = 0.45
    heart_shift: float = 0.04
    tilt: float = 0.0  # degrees


@dataclass(frozen=True)
class Lesion:
    """A spherical nodule: centre (x, y) in pixels, z and half-depth in chest fractions."""

    x: float
    y: float
    z: float
    radius: float  # pixels, in-plane, at the centre
    half_depth: float  # chest fraction
    hu: float


def random_body(rng: np.random.Generator) -> Body:
    """A plausible habitus; every drawn structure stays inside the body wall."""
    return Body(width=float(rng.uniform(0.37, 0.42)), depth=float(rng.uniform(0.25, 0.29)),
                fat=float(rng.uniform(0.015, 0.04)), lung_width=float(rng.uniform(0.30, 0.34)),
                lung_height=float(rng.uniform(0.68, 0.74)),
                lung_offset=float(rng.uniform(0.44, 0.47)),
                heart_shift=float(rng.uniform(0.02, 0.05)), tilt=float(rng.uniform(-3, 3)))


def _ellipse(img: np.ndarray, cx: float, cy: float, ax: float, ay: float, value: float,
             angle: float = 0.0, thickness: int = -1) -> None:
    """Fill (or outline) an ellipse with sub-pixel centre and axes."""
    s = 1 << _SHIFT
    cv2.ellipse(img, (round(cx * s), round(cy * s)), (max(round(ax * s), 1), max(round(ay * s), 1)),
                angle, 0, 360, float(value), thickness, cv2.LINE_8, _SHIFT)


def lung_scale(z: float) -> float:
    """Relative lung cross-section size along the chest: small at apex and base."""
    return 0.45 + 0.55 * math.sin(math.pi * (0.1 + 0.8 * min(max(z, 0.0), 1.0)))


def _anatomy(size: int, z: float, body: Body) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free slice in HU (float32) and its lung mask, before vessels and blur."""
    img = np.full((size, size), AIR, np.float32)
    cx, cy = size / 2, size * 0.47
    a, b = body.width * size, body.depth * size
    ia, ib = a - body.fat * size, b - body.fat * size  # inner (muscle) axes
    # table: carbon-fibre shell with a foam core, a small gap under the body
    top, h = cy + b + 0.03 * size, max(0.025 * size, 3.0)
    x0, x1 = round(cx - 0.44 * size), round(cx + 0.44 * size)
    cv2.rectangle(img, (x0, round(top)), (x1, round(top + h)), 250.0, -1)
    if h >= 3:
        cv2.rectangle(img, (x0 + 1, round(top) + 1), (x1 - 1, round(top + h) - 1), -800.0, -1)
    _ellipse(img, cx, cy, a, b, FAT, body.tilt)
    _ellipse(img, cx, cy, ia, ib, SOFT, body.tilt)
    # lungs, with a gravity-dependent density gradient added below
    lungs = np.zeros((size, size), np.uint8)
    s = lung_scale(z)
    lw, lh = body.lung_width * ia * s, body.lung_height * ib * s
    for side in (-1, 1):
        _ellipse(lungs, cx + side * body.lung_offset * ia, cy - 0.1 * lh, lw, lh, 1,
                 body.tilt + side * 8)
    # mediastinum: heart with epicardial fat (lower chest), descending aorta, spine, sternum
    heart = min(max((z - 0.3) / 0.35, 0.0), 1.0)
    hx, hy = cx + body.heart_shift * size, cy - 0.05 * ib
    solid = np.zeros((size, size), np.float32)
    if heart > 0:
        _ellipse(solid, hx, hy, 0.32 * ia * heart + 1.5, 0.5 * ib * heart + 1.5, 1, -25)
        _ellipse(img, hx, hy, 0.32 * ia * heart + 1.5, 0.5 * ib * heart + 1.5, FAT, -25)
        _ellipse(img, hx, hy, 0.32 * ia * heart, 0.5 * ib * heart, 45, -25)
    _ellipse(solid, cx, cy - 0.2 * ib, 0.14 * ia, 0.45 * ib, 1)  # mediastinal fat column
    aorta = (cx + 0.12 * ia, cy + 0.45 * ib, 0.09 * ib)
    _ellipse(solid, *aorta[:2], aorta[2] + 1, aorta[2] + 1, 1)
    vr = 0.14 * ib  # vertebral body radius
    vy = cy + 0.6 * ib
    _ellipse(solid, cx, vy, vr * 1.6, vr * 2.4, 1)
    lung = (lungs > 0) & (solid == 0)
    ys = np.linspace(-30.0, 30.0, size, dtype=np.float32)[:, None]  # posterior is denser
    img = np.where(lung, np.float32(LUNG) + ys, img)
    _ellipse(img, cx, cy - 0.2 * ib, 0.14 * ia, 0.45 * ib, -60)
    _ellipse(img, *aorta, aorta[2], BLOOD)
    _ellipse(img, cx, vy, vr, vr, CORTEX)
    _ellipse(img, cx, vy, vr * 0.8, vr * 0.8, BONE)
    _ellipse(img, cx, vy + vr * 1.6, vr * 0.45, vr * 0.45, 15)  # spinal canal (CSF)
    canal = np.zeros_like(img)
    _ellipse(canal, cx, vy + vr * 1.6, vr * 0.85, vr * 0.85, 1, thickness=max(size // 128, 1) + 1)
    img[(canal > 0) & (img == SOFT)] = CORTEX  # posterior arch
    cv2.rectangle(img, (round(cx - vr * 0.2), round(vy + vr * 2.3)),
                  (round(cx + vr * 0.2), round(vy + vr * 2.8)), BONE, -1)  # spinous process
    cv2.rectangle(img, (round(cx - 0.05 * ia), round(cy - ib * 0.98)),
                  (round(cx + 0.05 * ia), round(cy - ib * 0.9)), BONE, -1)  # sternum
    # ribs: oval cross-sections along the chest wall, their angles drift with z
    rr = max(0.012 * size, 1.2)
    for k in range(8):
        for side in (-1, 1):
            t = math.radians(-150 + 40 * k + 25 * math.sin(2 * math.pi * (3 * z + 0.1 * k)))
            rx, ry = cx + side * 0.93 * ia * math.cos(t), cy + 0.93 * ib * math.sin(t)
            _ellipse(img, rx, ry, rr * 1.4, rr, BONE, math.degrees(t) + 90)
            lung[max(round(ry - 2 * rr), 0):round(ry + 2 * rr) + 1,
                 max(round(rx - 2 * rr), 0):round(rx + 2 * rr) + 1] = False
    return img, lung


def lesion_mask(size: int, z: float, lesion: Lesion | None) -> np.ndarray:
    """Boolean (size, size) disk where the spherical nodule cuts the slice at `z`."""
    if lesion is None or abs(z - lesion.z) >= lesion.half_depth:
        return np.zeros((size, size), bool)
    r = lesion.radius * math.sqrt(1.0 - ((z - lesion.z) / lesion.half_depth) ** 2)
    yy, xx = np.ogrid[:size, :size]
    return (xx - lesion.x) ** 2 + (yy - lesion.y) ** 2 <= r * r


def ct_slice(size: int, z: float, rng: np.random.Generator, lesion: Lesion | None = None,
             body: Body | None = None, noise_hu: float = 15.0) -> np.ndarray:
    """One axial chest CT slice at chest fraction `z`, in HU (int16, within 12-bit range).

    Air outside (-1000), lungs (~-850) with a few vessels, soft tissue (~40), fat, spine, ribs
    and sternum (bone > 300), the table, a mild blur and Gaussian noise. A nodule, if given, is
    painted after the blur, so the slice differs from the lesion-free one exactly inside
    `lesion_mask(size, z, lesion)`.
    """
    img, lung = _anatomy(size, z, body or Body())
    where = np.flatnonzero(lung)
    if where.size:
        vessel = max(size / 256, 1.0)
        for flat in rng.choice(where, size=min(8, where.size), replace=False):
            y, x = divmod(int(flat), size)
            _ellipse(img, x, y, vessel, vessel, float(rng.uniform(-250, 40)))
    img = cv2.GaussianBlur(img, (0, 0), 0.6 * max(size / 128, 1.0))
    disk = lesion_mask(size, z, lesion)
    if lesion is not None and disk.any():
        img[disk] = lesion.hu
    img += rng.standard_normal((size, size), dtype=np.float32) * np.float32(noise_hu)
    return np.clip(np.rint(img), HU_MIN, HU_MAX).astype(np.int16)


def place_lesion(size: int, zs: list[float], body: Body, rng: np.random.Generator,
                 spacing_mm: float) -> Lesion:
    """A nodule (radius 3-8 px at 128 px, scaled with size; +30..60 HU) wholly inside a lung.

    Its centre is on one of the middle slices of `zs`; candidates are pixels of the lung mask
    eroded by the nodule radius (+2 px) on every slice the sphere touches.
    """
    scale = size / 128
    radius = max(float(rng.uniform(3.0, 8.0)) * scale, 2.0)
    margin = 2.0 * min(scale, 1.0)
    mid = len(zs) // 2
    centre = zs[int(rng.integers(max(mid - 2, 0), min(mid + 2, len(zs) - 1) + 1))]
    hu = float(rng.uniform(30, 60))
    while True:
        half = radius * spacing_mm / CHEST_MM
        ok = np.ones((size, size), bool)
        for z in zs:
            if abs(z - centre) >= half:
                continue
            r = radius * math.sqrt(1.0 - ((z - centre) / half) ** 2) + margin
            k = 2 * math.ceil(r) + 1
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
            ok &= cv2.erode(_anatomy(size, z, body)[1].astype(np.uint8), kernel) > 0
        candidates = np.flatnonzero(ok)
        if candidates.size or radius <= 1.0:
            break
        radius *= 0.85
    if not candidates.size:
        raise ValueError(f"no room for a lesion inside the lungs at {size} px")
    y, x = divmod(int(rng.choice(candidates)), size)
    return Lesion(x=float(x), y=float(y), z=centre, radius=radius, half_depth=half, hu=hu)


def xray_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """A chest radiograph-like image (PA view), float32 in [0, 1] (bright = dense)."""
    att = np.zeros((size, size), np.float32)
    cx, s = size / 2, size
    _ellipse(att, cx, 0.55 * s, 0.42 * s, 0.52 * s, 1.0)
    lungs = np.zeros_like(att)
    for side in (-1, 1):
        _ellipse(lungs, cx + side * 0.17 * s, 0.48 * s, 0.13 * s, 0.3 * s, 0.75, side * 6)
    att -= lungs
    _ellipse(att, cx + 0.05 * s, 0.62 * s, 0.15 * s, 0.13 * s, 0.55, -20)  # heart
    spine = np.zeros_like(att)
    spine[:, round(cx - 0.035 * s):round(cx + 0.035 * s)] = 0.5
    att += np.where(att > 0, spine, 0)
    thick = max(size // 100, 1)
    for k in range(9):
        for side in (-1, 1):
            centre = (round((cx + side * 0.1 * s) * 16), round((0.2 + 0.075 * k) * s * 16))
            axes = (round(0.19 * s * 16), round(0.07 * s * 16))
            start, end = (180, 320) if side < 0 else (220, 360)
            cv2.ellipse(att, centre, axes, side * 12, start, end, 0.35, thick, cv2.LINE_AA, 4)
    for side in (-1, 1):  # clavicles
        cv2.line(att, (round(cx + side * 0.04 * s), round(0.17 * s)),
                 (round(cx + side * 0.3 * s), round(0.12 * s)), 0.5, thick * 2, cv2.LINE_AA)
    att = cv2.GaussianBlur(att, (0, 0), size / 150)
    img = 1.0 - np.exp(-1.6 * np.clip(att, 0, None))
    img = img / max(float(img.max()), 1e-6)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.012)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def dermoscopy_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """A dermoscopy-like colour photo (uint8 BGR): skin, an irregular pigmented lesion, hairs."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    img = np.broadcast_to(np.array([140, 165, 215], np.float32), (size, size, 3)).copy()
    img *= (0.9 + 0.15 * (1 - (xx - 0.5) ** 2 - yy * 0.3))[..., None]
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    wobble = sum(rng.uniform(0.03, 0.09) * np.sin(k * angles + rng.uniform(0, 2 * np.pi))
                 for k in (2, 3, 5, 7))
    radii = 0.25 * size * (1 + wobble)
    pts = np.stack([size / 2 + radii * np.cos(angles), size / 2 + radii * np.sin(angles)], 1)
    cv2.fillPoly(img, [np.round(pts).astype(np.int32)], (45.0, 70.0, 115.0), cv2.LINE_AA)
    cv2.ellipse(img, (round(size * 0.52), round(size * 0.48)),
                (round(size * 0.08), round(size * 0.06)), 30, 0, 360, (30.0, 40.0, 70.0), -1)
    img = cv2.GaussianBlur(img, (0, 0), size / 120)
    t = np.linspace(0, 1, 24)[:, None]
    for _ in range(5):  # hairs: gently curved quadratic curves
        p0, p1, p2 = rng.uniform(-0.1, 1.1, (3, 2)) * size
        curve = (1 - t) ** 2 * p0 + 2 * t * (1 - t) * p1 + t**2 * p2
        cv2.polylines(img, [np.round(curve).astype(np.int32)], False, (25.0, 30.0, 40.0),
                      max(size // 200, 1), cv2.LINE_AA)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def brain_slice(size: int, z: float, rng: np.random.Generator) -> np.ndarray:
    """A T1-weighted head MR slice at fraction `z` (0 = skull base, 1 = vertex), float32."""
    img = np.zeros((size, size), np.float32)
    s = math.sqrt(max(1.0 - (2 * z - 1) ** 2 * 0.8, 0.05))
    cx, cy = size / 2, size / 2
    a, b = 0.38 * size * s, 0.46 * size * s
    _ellipse(img, cx, cy, a, b, 850)  # scalp fat
    _ellipse(img, cx, cy, a * 0.93, b * 0.94, 120)  # skull
    _ellipse(img, cx, cy, a * 0.86, b * 0.88, 300)  # CSF
    _ellipse(img, cx, cy, a * 0.82, b * 0.85, 520)  # grey matter
    _ellipse(img, cx, cy, a * 0.62, b * 0.68, 720)  # white matter
    if 0.3 < z < 0.75:  # lateral ventricles
        for side in (-1, 1):
            _ellipse(img, cx + side * 0.06 * size, cy - 0.02 * size, 0.035 * size,
                     0.13 * size * s, 260, side * 10)
    img = cv2.GaussianBlur(img, (0, 0), max(size / 96, 0.6))
    noise = rng.standard_normal((2, size, size), dtype=np.float32) * np.float32(12)
    return np.hypot(img + noise[0], noise[1]).astype(np.float32)  # Rician magnitude noise


# ---- invented patients and the series plan ----
# Every identity value is >= 4 characters and unlike any generic header text.
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


@dataclass(frozen=True)
class SeriesPlan:
    """One CT series to write: who, which study, geometry and the nodule (or none)."""

    index: int
    patient: Patient
    study: Study
    uid: str
    frame_uid: str
    number: int
    n_slices: int
    size: int
    seed: int
    lesion: Lesion | None

    @property
    def name(self) -> str:
        return f"series_{self.index:03d}"

    @property
    def spacing_mm(self) -> float:
        return self.patient.fov_mm / self.size

    @property
    def thickness_mm(self) -> float:
        return min(5.0, CHEST_MM / self.n_slices)

    def z_fraction(self, k: int) -> float:
        """Chest fraction of slice `k`: a contiguous slab centred mid-chest, feet to head."""
        return 0.5 + ((self.n_slices - 1) / 2 - k) * self.thickness_mm / CHEST_MM

    def z_fractions(self) -> list[float]:
        return [self.z_fraction(k) for k in range(self.n_slices)]

    def z_mm(self, k: int) -> float:
        return -150.0 + (k - (self.n_slices - 1) / 2) * self.thickness_mm

    def sop_uid(self, k: int) -> str:
        return uid_for(self.seed, "sop", self.index, k)

    def slice_hu(self, k: int) -> np.ndarray:
        """Slice `k` in HU, exactly as written to `slice_{k:04d}.dcm`."""
        return ct_slice(self.size, self.z_fraction(k), rng_for(self.seed, 7, self.index, k),
                        self.lesion, self.patient.body)

    def mask(self) -> np.ndarray:
        """uint8 (slices, size, size) nodule mask: 1 inside the nodule."""
        return np.stack([lesion_mask(self.size, z, self.lesion)
                         for z in self.z_fractions()]).astype(np.uint8)


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


def plan_series(patients: int, seed: int, slices_per_series: int = 12,
                size: int = 128) -> list[SeriesPlan]:
    """The CT series of the sample: one per patient, a follow-up study for every third.

    Patients alternate between nodule (label 1) and no nodule (label 0), starting by seed
    parity; a follow-up keeps its patient's label (the nodule a little larger).
    """
    people = make_patients(patients, seed)
    accessions = rng_for(seed, 4).choice(9_000_000, size=2 * patients, replace=False) + 1_000_000
    plans: list[SeriesPlan] = []
    for p in people:
        has_lesion = (p.index + seed) % 2 == 1
        lesion = None
        for number in range(2 if p.index % 3 == 1 else 1):
            study = make_study(p, number, seed, int(accessions[2 * p.index + number]))
            index = len(plans)
            plan = SeriesPlan(index=index, patient=p, study=study,
                              uid=uid_for(seed, "series", index),
                              frame_uid=uid_for(seed, "frame", p.index, number), number=1 + number,
                              n_slices=slices_per_series, size=size, seed=seed, lesion=None)
            if has_lesion and lesion is None:
                lesion = place_lesion(size, plan.z_fractions(), p.body, rng_for(seed, 5, p.index),
                                      plan.spacing_mm)
            elif lesion is not None:
                lesion = Lesion(lesion.x, lesion.y, lesion.z, lesion.radius * 1.12,
                                lesion.half_depth * 1.12, lesion.hu)
            plans.append(replace(plan, lesion=lesion))
    return plans
