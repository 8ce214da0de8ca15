"""The IBSI compliance evidence of a run: the digital phantom and the CT phantom in configurations A-E.

:func:`ibsi_compliance` runs the project's extraction (``ibsi`` preset, the project's preprocessing and
re-segmentation) on both IBSI 1 phantoms shipped in ``data/`` and returns the tables a reviewer needs, in reading
order: a summary per phantom and configuration; every mapped feature outside tolerance with its reason; the CT
phantom's image-processing diagnostics (grid, ROI voxel counts and intensity ranges after interpolation and
re-segmentation, which must match before the features can); then the full comparisons and the unmapped tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from helpers.features.ibsi import (
    CT_PHANTOM_CONFIGS,
    CT_PHANTOM_DIR,
    PHANTOM_DIR,
    CTPhantomConfig,
    ct_phantom_comparison,
    ct_phantom_diagnostics,
    ibsi_phantom_comparison,
    ibsi_unmapped_tags,
)

__all__ = ["IBSICompliance", "ibsi_compliance", "ct_configuration_text", "DIGITAL_PHANTOM_PROCESSING"]

#: The digital phantom's processing (IBSI 1: none; its integer grey levels are the bins).
DIGITAL_PHANTOM_PROCESSING = "3D, no interpolation or re-segmentation, fixed bin size 1 (the phantom's grey levels)"


def _number(value: float) -> str:
    return f"{value:g}"


def ct_configuration_text(config: CTPhantomConfig) -> str:
    """The image processing of a CT phantom configuration in words (the summary table's column)."""
    parts = ["2D (per slice)" if config.dimensions == "2D" else "3D"]
    if config.resample_mm is None:
        parts.append("no interpolation")
    else:
        kind = {"linear": "bilinear" if config.dimensions == "2D" else "trilinear", "bspline": "tricubic spline"}[config.interpolator]
        grid = " x ".join(_number(v) for v in config.resample_mm)
        parts.append(f"{kind} interpolation to {grid} mm, grid centres aligned, rounded to HU")
    if config.resegment_range is not None:
        parts.append(f"re-segmentation {_number(config.resegment_range[0])} to {_number(config.resegment_range[1])} HU")
    if config.outlier_sigma is not None:
        parts.append(f"{'then ' if config.resegment_range is not None else 're-segmentation '}mean \u00b1 {_number(config.outlier_sigma)} SD")
    if config.bin_count is not None:
        parts.append(f"fixed bin number {config.bin_count}")
    else:
        start = f" from {_number(config.resegment_range[0])} HU" if config.resegment_range is not None else ""
        parts.append(f"fixed bin size {_number(config.bin_width)} HU{start}")
    return ", ".join(parts)


@dataclass(frozen=True)
class IBSICompliance:
    """The tables of :func:`ibsi_compliance` (each a DataFrame; see there)."""

    summary: pd.DataFrame
    deviations: pd.DataFrame
    digital: pd.DataFrame
    digital_unmapped: pd.DataFrame
    ct_diagnostics: pd.DataFrame
    ct: pd.DataFrame
    ct_unmapped: pd.DataFrame


def _counts(table: pd.DataFrame, unmapped: pd.DataFrame) -> dict[str, int]:
    features = unmapped[~unmapped["reason"].str.startswith("image-processing diagnostic")]
    within = int(table["within_tolerance"].sum())
    return {"mapped_features": len(table), "features_within_tolerance": within, "deviating": len(table) - within,
            "unmapped_features": len(features)}


def ibsi_compliance(phantom_dir: str | Path = PHANTOM_DIR, ct_phantom_dir: str | Path = CT_PHANTOM_DIR,
                    ct_configs: tuple[str, ...] = tuple(CT_PHANTOM_CONFIGS)) -> IBSICompliance:
    """Compare the project's features with the IBSI 1 reference values of both phantoms.

    Parameters
    ----------
    phantom_dir : str or Path
        The digital phantom (``image/``, ``mask/``, ``reference_values.csv``).
    ct_phantom_dir : str or Path
        The CT phantom (``image/``, ``mask/``, ``ibsi_1_chest_config_<x>.csv``).
    ct_configs : tuple of str
        CT phantom configurations to run (:data:`helpers.features.ibsi.CT_PHANTOM_CONFIGS`; all by default).

    Returns
    -------
    IBSICompliance
        ``summary``: a row per phantom and configuration: ``phantom``, ``configuration``, ``image_processing``,
        ``diagnostics``, ``diagnostics_within_tolerance`` (CT only), ``mapped_features``, ``features_within_tolerance``,
        ``deviating``, ``unmapped_features`` (image-processing diagnostics not counted).
        ``deviations``: every mapped feature outside tolerance: ``phantom`` (``digital`` or ``CT <config>``), ``tag``,
        ``pyradiomics_feature``, ``value``, ``reference``, ``tolerance``, ``reason``.
        ``digital`` / ``digital_unmapped``: :func:`~helpers.features.ibsi.ibsi_phantom_comparison` and
        :func:`~helpers.features.ibsi.ibsi_unmapped_tags` of the digital phantom.
        ``ct_diagnostics``: a row per diagnostic tag, ``ibsi_reference_<config>`` and ``computed_<config>`` columns.
        ``ct``: every configuration's comparison (``configuration`` column first).
        ``ct_unmapped``: the CT phantom's unmapped features (diagnostics left out), a row per tag with the
        ``configurations`` in which it is unmapped.
    """
    phantom_dir, ct_phantom_dir = Path(phantom_dir), Path(ct_phantom_dir)
    csv = phantom_dir / "reference_values.csv"
    digital = ibsi_phantom_comparison(phantom_dir / "image" / "phantom.nii.gz", phantom_dir / "mask" / "mask.nii.gz", csv)
    digital_unmapped = ibsi_unmapped_tags(csv)
    summary = [{"phantom": "digital", "configuration": "-", "image_processing": DIGITAL_PHANTOM_PROCESSING,
                "diagnostics": pd.NA, "diagnostics_within_tolerance": pd.NA,  # the digital phantom has none
                **_counts(digital, digital_unmapped)}]
    deviations = [digital.assign(phantom="digital")]
    diagnostics: dict[str, pd.DataFrame] = {}
    comparisons, unmapped = [], []
    for name in ct_configs:
        config = CT_PHANTOM_CONFIGS[name]
        diag = ct_phantom_diagnostics(config, ct_phantom_dir)
        table = ct_phantom_comparison(config, ct_phantom_dir)
        missing = ibsi_unmapped_tags(ct_phantom_dir / f"ibsi_1_chest_config_{name.lower()}.csv")
        summary.append({"phantom": "CT", "configuration": name, "image_processing": ct_configuration_text(config),
                        "diagnostics": len(diag), "diagnostics_within_tolerance": int(diag["within_tolerance"].sum()),
                        **_counts(table, missing)})
        diagnostics[name] = diag.set_index("tag")
        comparisons.append(table.assign(configuration=name))
        unmapped.append(missing[~missing["reason"].str.startswith("image-processing diagnostic")].assign(configuration=name))
    ct = pd.concat(comparisons, ignore_index=True) if comparisons else digital.iloc[:0].assign(configuration="")
    ct = ct[["configuration", *[c for c in ct.columns if c != "configuration"]]]
    deviations.append(ct.assign(phantom="CT " + ct["configuration"]))
    dev = pd.concat(deviations, ignore_index=True)
    dev = dev[~dev["within_tolerance"]].rename(columns={"known_reason": "reason"})
    dev = dev[["phantom", "tag", "pyradiomics_feature", "value", "reference", "tolerance", "reason"]]
    return IBSICompliance(
        summary=pd.DataFrame(summary),
        deviations=dev.reset_index(drop=True),
        digital=digital,
        digital_unmapped=digital_unmapped,
        ct_diagnostics=_wide_diagnostics(diagnostics),
        ct=ct,
        ct_unmapped=_unmapped_by_tag(unmapped),
    )


def _integral(value: float) -> float | int:
    """Voxel counts, grid sizes and HU bounds as integers (written ``204``, not ``204.0``); other values unchanged."""
    return int(value) if pd.notna(value) and float(value).is_integer() else value


def _wide_diagnostics(diagnostics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    if not diagnostics:
        return pd.DataFrame(columns=["diagnostic"])
    tags = list(next(iter(diagnostics.values())).index)
    out = pd.DataFrame({"diagnostic": tags})
    for name, diag in diagnostics.items():
        # object columns: a list mixing ints and floats would be cast back to float ("204.0")
        out[f"ibsi_reference_{name}"] = pd.Series([_integral(v) for v in diag["reference"].reindex(tags)], dtype=object)
        out[f"computed_{name}"] = pd.Series([_integral(v) for v in diag["value"].reindex(tags)], dtype=object)
    return out


def _unmapped_by_tag(unmapped: list[pd.DataFrame]) -> pd.DataFrame:
    columns = ["tag", "ibsi_family", "configurations", "reason"]
    if not unmapped:
        return pd.DataFrame(columns=columns)
    rows = pd.concat(unmapped, ignore_index=True)
    # A row per tag and reason (a tag may lack IBSI's consensus value in some configurations only).
    grouped = rows.groupby(["tag", "reason"], sort=False).agg(ibsi_family=("ibsi_family", "first"),
                                                              configurations=("configuration", lambda c: ", ".join(c)))
    return grouped.reset_index()[columns]
