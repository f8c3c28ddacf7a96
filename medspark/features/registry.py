"""The feature families: one table, family name -> (feature names, ``compute(context)``).

As pyradiomics' extractor discovers its feature classes, :func:`medspark.features.extract`
knows nothing about any family: it builds a :class:`~medspark.features.context.Context` and
calls each chosen family's ``compute``, which returns a name-keyed dict; outputs are read back
in the order of the family's ``NAMES``, so a family cannot emit its values in another order.
A new family is one module with ``NAMES`` and ``compute`` plus one line here. The table's order
is the output order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from medspark.features import extra, firstorder, glcm, gldm, glrlm, glszm, ngtdm, shape2d
from medspark.features.context import Context

Names = tuple[str, ...] | Callable[[Mapping[str, Any]], tuple[str, ...]]


@dataclass(frozen=True)
class Family:
    """One feature family: its name (the output prefix), its feature names (a tuple, or a
    function of the extra-family settings when they depend on them), its ``compute`` and
    whether it is on by default (the seven pyradiomics families are)."""

    name: str
    names: Names
    compute: Callable[[Context], Mapping[str, float]]
    default: bool = True

    def feature_names(self, extra_settings: Mapping[str, Any]) -> tuple[str, ...]:
        """Names without the family prefix, in output order."""
        return self.names(extra_settings) if callable(self.names) else self.names


REGISTRY: dict[str, Family] = {f.name: f for f in (
    Family("firstorder", firstorder.NAMES, firstorder.compute),
    Family("shape2D", shape2d.NAMES, shape2d.compute),
    Family("glcm", glcm.NAMES, glcm.compute),
    Family("glrlm", glrlm.NAMES, glrlm.compute),
    Family("glszm", glszm.NAMES, glszm.compute),
    Family("gldm", gldm.NAMES, gldm.compute),
    Family("ngtdm", ngtdm.NAMES, ngtdm.compute),
    Family("histogram", extra.histogram_names, extra.histogram, default=False),
    Family("lbp", extra.lbp_names, extra.lbp, default=False),
    Family("hog", extra.hog_names, extra.hog, default=False),
)}

#: The pyradiomics families, computed when no family is chosen.
FAMILIES: tuple[str, ...] = tuple(name for name, f in REGISTRY.items() if f.default)
#: Every family, in output order.
ALL_FAMILIES: tuple[str, ...] = tuple(REGISTRY)
