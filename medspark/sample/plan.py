"""The CT series of the sample: who, which study, geometry and the nodule (or none)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from medspark.sample.anatomy import CHEST_MM, Lesion, ct_slice, lesion_mask, place_lesion
from medspark.sample.people import Patient, Study, make_patients, make_study, rng_for, uid_for


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
