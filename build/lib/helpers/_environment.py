"""Software versions and seeds: used by every stage (extraction cache keys, provenance, notebooks)."""

from __future__ import annotations

import platform
import random
import sys
from importlib import metadata

import numpy as np

__all__ = ["KEY_PACKAGES", "package_versions", "set_seeds"]

#: Packages whose versions are reported in methods sections and provenance records.
KEY_PACKAGES = (
    "numpy", "pandas", "scipy", "SimpleITK", "pyradiomics-bhklab", "pydicom", "scikit-learn",
    "statsmodels", "torch", "monai", "shap", "papermill", "matplotlib", "seaborn",
)  # fmt: skip


def set_seeds(seed: int) -> None:
    """Seed Python's, NumPy's and (when installed and imported) PyTorch's generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (``"not installed"`` when absent)."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
