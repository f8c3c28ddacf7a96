"""Association rules: item naming and pruning of redundant rules."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations


@dataclass(frozen=True)
class Rule:
    """`antecedent -> consequent` with FPGrowth's measures."""

    antecedent: tuple[str, ...]
    consequent: tuple[str, ...]
    support: float
    confidence: float
    lift: float


def item(column: str, value: object) -> str:
    """The item string of a column's value: `modality=CT`, `glcm_Contrast=Q4`."""
    return f"{column}={value}"


def bin_item(column: str, index: int) -> str:
    """Item of a feature's quantile bin (0-based index): `feature=Q1` is the lowest."""
    return item(column, f"Q{index + 1}")


def prune_redundant(rules: Iterable[Rule]) -> list[Rule]:
    """Rules that are not redundant, in their input order.

    A rule is redundant when a rule with the same consequent and a strictly smaller antecedent
    has at least its confidence: the extra conditions add nothing. (A longer rule that raises
    the confidence is kept: that is the interaction a person wants to see.)
    """
    rules = list(rules)
    best: dict[tuple[frozenset[str], tuple[str, ...]], float] = {}
    for r in rules:
        key = (frozenset(r.antecedent), tuple(sorted(r.consequent)))
        best[key] = max(best.get(key, -1.0), r.confidence)
    kept = []
    for r in rules:
        ante, cons = frozenset(r.antecedent), tuple(sorted(r.consequent))
        redundant = any(
            best.get((frozenset(sub), cons), -1.0) >= r.confidence
            for size in range(1, len(ante))
            for sub in combinations(sorted(ante), size))
        if not redundant:
            kept.append(r)
    return kept
