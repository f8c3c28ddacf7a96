"""`generate_sample`: the whole synthetic sample (series, other DICOM, rasters, NIfTI, broken
files, labels and the PHI list); `split_nights`: the same files as nightly PACS deliveries.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from medspark.config import ConfigError
from medspark.sample.dicom import write_multiframe, write_rle, write_series, write_sr
from medspark.sample.files import write_broken, write_nifti, write_rasters
from medspark.sample.objects import write_rtstruct, write_seg
from medspark.sample.plan import plan_series


def generate_sample(output: str | Path, patients: int = 8, seed: int = 0,
                    slices_per_series: int = 12, size: int = 128) -> dict[str, Any]:
    """Write the synthetic sample under `output`; returns counts per kind and relative paths.

    Layout: `images/` (ct/series_NNN/slice_NNNN.dcm, rtstruct/ (nodule contours of each
    nodule series), seg/ (the first nodule as a DICOM SEG), dicom_other/, png/, jpeg/, tiff/,
    nifti/, broken/),
    `masks/series_NNN.npy` for nodule series, `labels.csv` (one row per CT slice, keyed by
    the path relative to `images/`) and `phi.json`. Refuses to write over an existing
    sample rather than delete anything.
    """
    if patients < 1 or slices_per_series < 1 or size < 64:
        raise ConfigError("sample needs patients >= 1, slices_per_series >= 1 and size >= 64")
    root = Path(output)
    images = root / "images"
    if images.exists() and any(images.iterdir()):
        raise ConfigError(f"{images} already exists and is not empty; choose another --output")
    plans = plan_series(patients, seed, slices_per_series, size)
    phi: set[str] = set()
    labels, masks, ct_files = [], {}, []
    for plan in plans:
        paths = write_series(plan, images / "ct" / plan.name)
        ct_files += paths
        phi |= plan.patient.phi() | {plan.study.uid, plan.uid, plan.frame_uid,
                                     plan.study.accession, plan.study.study_id,
                                     plan.study.description}
        phi |= {plan.sop_uid(k) for k in range(plan.n_slices)}
        label = int(plan.lesion is not None)
        labels += [(path.relative_to(images).as_posix(), plan.uid, label, plan.patient.patient_id)
                   for path in paths]
        if plan.lesion is not None:
            mask_path = root / "masks" / f"{plan.name}.npy"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(mask_path, plan.mask())
            masks[plan.name] = mask_path.relative_to(root).as_posix()
    other = images / "dicom_other"
    other.mkdir(parents=True, exist_ok=True)
    pick = {i: plans[min(i, len(plans) - 1)] for i in (0, 1, 2)}
    phi |= write_multiframe(pick[0], other / "mpr_multiframe.dcm")
    phi |= write_rle(pick[1], other / "key_image_rle.dcm")
    phi |= write_sr(pick[2], other / "report_sr.dcm")
    lesion_plans = [p for p in plans if p.lesion is not None]
    for plan in lesion_plans:
        phi |= write_rtstruct(plan, images / "rtstruct" / f"{plan.name}_rtstruct.dcm")
    if lesion_plans:  # the first nodule also as a DICOM SEG
        phi |= write_seg(lesion_plans[0], images / "seg" / f"{lesion_plans[0].name}_seg.dcm")
    rasters = write_rasters(images, seed, (lesion_plans or plans)[0])
    nifti = write_nifti(images, seed, plans[0].patient)
    broken = write_broken(images, seed, ct_files[0])
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["source_path", "series_instance_uid", "label", "patient"])
        writer.writerows(sorted(labels))
    short = sorted(s for s in phi if len(s) < 4)
    if short:
        raise RuntimeError(f"PHI strings shorter than 4 characters: {short}")
    (root / "phi.json").write_text(json.dumps(sorted(phi), indent=1) + "\n")
    kinds = {"ct_slices": len(ct_files), "dicom_other": 3, "rtstruct": len(lesion_plans),
             "seg": int(bool(lesion_plans)),
             "nifti": len(nifti),
             "broken": len(broken)}
    for path in rasters:
        kinds[path.parent.name] = kinds.get(path.parent.name, 0) + 1
    return {
        "output": str(root.resolve()),
        "patients": patients,
        "seed": seed,
        "ct_series": len(plans),
        "lesion_series": len(lesion_plans),
        "files": {**kinds, "total": sum(1 for p in images.rglob("*") if p.is_file())},
        "phi_strings": len(phi),
        "images": "images",
        "labels": "labels.csv",
        "phi": "phi.json",
        "masks": masks,
    }


def split_nights(sample: str | Path, nights: int) -> list[Path]:
    """Split a sample's images into what a PACS export receives night by night:
    `<sample>/nights/<k>/` holds the files arriving on night k (relative paths as under
    `images/`). The CT series (with their RTSTRUCT/SEG) are cut into `nights` consecutive
    groups, so later nights bring new patients; every other file arrives on night 1.
    Files are hard links where the filesystem allows (copies otherwise)."""
    import os
    import shutil

    if nights < 1:
        raise ConfigError("--nights must be at least 1")
    images = Path(sample) / "images"
    series = sorted(p.name for p in (images / "ct").iterdir() if p.is_dir())
    if len(series) < nights:
        raise ConfigError(f"{len(series)} CT series cannot be split into {nights} nights")
    night_of = {name: min(nights, 1 + i * nights // len(series))
                for i, name in enumerate(series)}
    out = [Path(sample) / "nights" / str(k) for k in range(1, nights + 1)]
    for path in sorted(p for p in images.rglob("*") if p.is_file()):
        rel = path.relative_to(images)
        owner = next((s for s in series if rel.parts[:2] == ("ct", s)
                      or rel.name.startswith(f"{s}_")), None)
        target = out[night_of[owner] - 1 if owner else 0] / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    return out
