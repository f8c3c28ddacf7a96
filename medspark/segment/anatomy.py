"""Anatomical masks for CT slices in HU: the patient's body and the lungs.

Classic threshold + morphology recipes (no learning), fast enough to run on every slice:

- body: HU > -500 separates tissue from air; an opening cuts thin structures such as the
  patient table (and thin bridges of blanket/cushion joining it to the body); the largest
  component is the patient; filling holes adds the lungs and bowel gas inside the body.
- lungs: air-like pixels (HU < -400) inside the body, not touching the image border, keeping
  the (up to) two largest components; a closing and hole filling add vessels and nodules
  lying within the lung.

Known limits: bowel gas in low slices and the trachea/main bronchi in high slices can be taken
as lung when larger than `min_area_fraction` of the largest candidate; a lung cut by the field
of view is dropped by the border rule.
"""

from __future__ import annotations

import numpy as np

from medspark.image import Spacing, to_gray
from medspark.segment.components import clear_border, label, largest
from medspark.segment.morphology import closing, fill_holes, opening


def body_mask(
    image: np.ndarray,
    spacing: Spacing,
    *,
    threshold: float = -500.0,
    open_radius: float = 5.0,
    units: str = "mm",
) -> np.ndarray:
    """The patient's body in a CT slice (HU): threshold, opening of `open_radius` (removes the
    table and anything thinner than about twice the radius), largest component, holes filled.
    `units` mm needs the pixel spacing; use px for images without one."""
    x = to_gray(image)
    m = x > threshold
    if open_radius > 0:
        m = opening(m, spacing, radius=open_radius, units=units)
    return fill_holes(largest(m))


def lung_mask(
    image: np.ndarray,
    spacing: Spacing,
    *,
    threshold: float = -400.0,
    body_threshold: float = -500.0,
    body_open_radius: float = 5.0,
    close_radius: float = 5.0,
    min_area_fraction: float = 0.1,
    max_components: int = 2,
    units: str = "mm",
) -> np.ndarray:
    """Both lungs in a chest CT slice (HU); empty when the slice has none.

    Candidates are pixels below `threshold` inside `body_mask` and not touching the border;
    the `max_components` largest are kept if at least `min_area_fraction` of the largest
    (drops trachea and small gas pockets), then closed with `close_radius` and hole-filled.
    """
    x = to_gray(image)
    body = body_mask(x, spacing, threshold=body_threshold, open_radius=body_open_radius,
                     units=units)
    candidates = clear_border((x < threshold) & body)
    labels, areas = label(candidates)
    if len(areas) <= 1:
        return np.zeros(x.shape, dtype=bool)
    order = np.argsort(-areas[1:], kind="stable")[:max_components] + 1
    keep = order[areas[order] >= min_area_fraction * areas[order[0]]]
    lungs = np.isin(labels, keep)
    if close_radius > 0:
        lungs = closing(lungs, spacing, radius=close_radius, units=units)
    return fill_holes(lungs)
