"""The two naming grammars of a study, in one place.

**Feature columns** of the wide feature tables read ``{series}_{roi}_{feature}``, where ``feature`` is
pyradiomics' ``{imageType}_{class}_{name}`` (``MR_T1_tumour_original_firstorder_Mean``), a habitat ROI is
``habitat{k}`` (``CT_habitat2_original_glcm_Contrast``) and notebook 02's deep features are
``{series}_deep_pc{k:02d}``. Series names may contain underscores and one may prefix another (``MR_T1`` and
``MR_T1_SR``): a column belongs to the *longest* configured series it starts with.

**Model names** in the model grid and the compared models read ``{block} ({algorithm})``, where a block is
``{series} / {roi}``, ``{series} / habitats`` or ``{series} / deep`` (``MR_T1 / tumour (logistic)``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "block_name",
    "columns_of_series",
    "deep_feature_name",
    "feature_column",
    "habitat_roi",
    "model_name",
    "parse_model_name",
    "series_of_column",
    "shown_name",
    "study_block_columns",
]

_MODEL = re.compile(r"^(?P<block>.+) \((?P<algorithm>[^()]+)\)$")


def feature_column(series: str, roi: str, feature: str) -> str:
    """``{series}_{roi}_{feature}``, e.g. ``feature_column("CT", "tumour", "original_firstorder_Mean")``."""
    return f"{series}_{roi}_{feature}"


def shown_name(name: object) -> str:
    """A configured name as text in figures and documents: underscores as spaces (``external_test`` -> ``external test``)."""
    return str(name).replace("_", " ")


def habitat_roi(k: int) -> str:
    """Name of the ROI of habitat ``k`` (1-based): ``habitat{k}``."""
    return f"habitat{int(k)}"


def deep_feature_name(series: str, component: int) -> str:
    """Name of the ``component``-th (1-based) deep feature of a series: ``{series}_deep_pc{k:02d}``."""
    return f"{series}_deep_pc{int(component):02d}"


def series_of_column(column: str, series: Iterable[str]) -> str | None:
    """The series a column belongs to: the longest of ``series`` it starts with (``<series>_``); ``None`` for none
    (e.g. a clinical variable)."""
    matches = [s for s in series if str(column).startswith(f"{s}_")]
    return max(matches, key=len) if matches else None


def columns_of_series(columns: Iterable[str], wanted: str | Iterable[str], series: Iterable[str]) -> list[str]:
    """The columns (in their order) whose series (:func:`series_of_column` among ``series``) is in ``wanted``."""
    wanted_set = {wanted} if isinstance(wanted, str) else set(wanted)
    names = list(series)
    return [c for c in columns if series_of_column(c, names) in wanted_set]


def block_name(series: str, block: str) -> str:
    """A model-grid block: ``{series} / {roi}`` (or ``habitats``, ``deep``)."""
    return f"{series} / {block}"


def model_name(block: str, algorithm: str) -> str:
    """A compared model: ``{block} ({algorithm})``."""
    return f"{block} ({algorithm})"


def parse_model_name(name: str) -> tuple[str, str] | None:
    """``(block, algorithm)`` of a name written by :func:`model_name`; ``None`` for other names."""
    m = _MODEL.match(str(name))
    return (m.group("block"), m.group("algorithm")) if m else None


def study_block_columns(columns: Iterable[str], series: Iterable[str], rois: Iterable[str]) -> dict[str, list[str]]:
    """The feature columns of every model-grid block: one per series x ROI, habitats of a series pooled, deep
    features of a series, in series then ROI order; blocks without columns are left out."""
    names = list(series)
    columns = list(columns)
    blocks: dict[str, list[str]] = {}
    for s in names:
        own = columns_of_series(columns, s, names)
        for roi in rois:
            cols = [c for c in own if c.startswith(f"{s}_{roi}_")]
            if cols:
                blocks[block_name(s, roi)] = cols
        for block, prefix in (("habitats", f"{s}_habitat"), ("deep", f"{s}_deep_")):
            cols = [c for c in own if c.startswith(prefix)]
            if cols:
                blocks[block_name(s, block)] = cols
    return blocks
