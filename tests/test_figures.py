"""Figures: mid-slice choice, contour montages and their pagination."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import yaml

from helpers.data.manifest import load_study
from helpers.figures.images import cohort_montages, mid_slice_index
from helpers.figures.style import PALETTE
from helpers.settings.study import load_config


def test_mid_slice_index():
    m = np.zeros((20, 4, 4), dtype=bool)
    m[4:11] = True
    assert mid_slice_index(m) == 7
    gap = np.zeros((20, 4, 4), dtype=bool)
    gap[[2, 3, 15]] = True  # the middle of the extent (8) has no mask: nearest masked slice is used
    assert mid_slice_index(gap) == 3
    with pytest.raises(ValueError, match="empty mask"):
        mid_slice_index(np.zeros((3, 3, 3), dtype=bool))


def test_palette_is_okabe_ito():
    assert PALETTE[:3] == ("#0072B2", "#E69F00", "#009E73")


@pytest.mark.parametrize(("max_panels", "names"), [(54, ["montage_ct", "montage_mr"]), (1, ["montage_ct_p1", "montage_ct_p2", "montage_mr_p1", "montage_mr_p2"])])
def test_cohort_montages_paginate(tiny_study, max_panels, names):
    data = yaml.safe_load((tiny_study / "study.yaml").read_text())
    data["qc"] = {"montage_max_panels": max_panels}
    (tiny_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_config(tiny_study / "study.yaml")
    manifest, _ = load_study(cfg)
    rows = manifest[manifest["cohort"] == "train"]
    got = []
    for name, fig in cohort_montages(rows, cfg, "train"):
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        got.append((name, titles))
        plt.close(fig)
    assert [n for n, _ in got] == names
    panels = [t for _, titles in got for t in titles]
    assert sorted(panels) == ["P01\nz = 4", "P01\nz = 4", "P02\nz = 4", "P02\nz = 4"]  # mask spans z 3..6: (3 + 6) // 2
