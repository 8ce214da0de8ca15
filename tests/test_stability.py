"""Tests of helpers.learning.stability: ICC against pingouin and Shrout & Fleiss, mask perturbation geometry,
the ICC filter (planted stability, no leakage), retained counts and the reader agreement table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
import SimpleITK as sitk
from scipy.spatial.distance import cdist
from sklearn.base import clone
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import KFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from statsmodels.stats.inter_rater import cohens_kappa as sm_cohens_kappa

from helpers.errors import PerturbationError
from helpers.imaging.rois import perturbed_mask
from helpers.learning.stability import (
    ICC_TYPES,
    ICCFilter,
    ReaderMismatchError,
    cohens_kappa,
    icc_table,
    reader_agreement_table,
    retained_counts,
)

from .conftest import arr, image_from

ANISO = (0.5, 0.5, 3.0)  # x, y, z in mm

# Shrout & Fleiss (1979), Table 2: 6 targets (rows) rated by 4 judges (columns).
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float)


def _readers(values: list[np.ndarray], columns: list[str], patients: list[str]) -> list[pd.DataFrame]:
    return [pd.DataFrame(v, index=pd.Index(patients, name="patient"), columns=columns) for v in values]


def _pingouin_icc(tables: list[pd.DataFrame], feature: str) -> pd.DataFrame:
    long = pd.concat(
        [pd.DataFrame({"patient": t.index, "reader": f"r{i}", "value": t[feature].to_numpy()}) for i, t in enumerate(tables)],
        ignore_index=True,
    )
    return pg.intraclass_corr(long, targets="patient", raters="reader", ratings="value", nan_policy="omit").set_index("Type")


@pytest.fixture
def unrounded_pingouin(monkeypatch):
    # pingouin rounds the CI column to 2 decimals by default; the reference check needs full precision.
    monkeypatch.setitem(pg.options, "round.column.CI95", None)


# -- icc_table -----------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3])
def test_icc_table_matches_pingouin_all_types(unrounded_pingouin, k):
    rng = np.random.default_rng(k)
    n, features = 25, ["a", "b", "c", "d", "e"]
    truth = rng.normal(size=(n, 5)) * [1, 3, 0.2, 10, 1]
    noise = [0.1, 1.0, 0.5, 30.0, 0.0001]  # excellent to poor agreement, plus a near-exact one
    values = [truth + rng.normal(size=(n, 5)) * noise + 0.3 * r for r in range(k)]  # reader offsets matter for A vs C
    values[0][4, 1] = np.nan  # a missing value: that patient is dropped for feature b only
    patients = [f"P{i:02d}" for i in range(n)]
    tables = _readers(values, features, patients)
    for icc_type in ICC_TYPES:
        table = icc_table(*tables, icc_type=icc_type)
        for feature in features:
            ref = _pingouin_icc(tables, feature).loc[icc_type]
            got = table.loc[feature]
            np.testing.assert_allclose([got.icc, got.ci_low, got.ci_high], [ref.ICC, *ref.CI95], rtol=0, atol=1e-8)
            # pingouin gets SSE by subtraction, which loses ~1e-8 relative precision when the readers nearly agree.
            np.testing.assert_allclose([got.F, got.pval], [ref.F, ref.pval], rtol=1e-6, atol=1e-12)
            assert (got.df1, got.df2) == (ref.df1, ref.df2)
    assert table.loc["b", "n_patients"] == n - 1 and table.loc["a", "n_patients"] == n
    assert table.attrs["patients"] == patients and (table["n_readers"] == k).all()


def test_icc_shrout_fleiss_1979_worked_example():
    patients = [f"T{i}" for i in range(1, 7)]
    judges = [pd.DataFrame({"rating": SHROUT_FLEISS[:, j]}, index=patients) for j in range(4)]
    published = {"ICC(1,1)": 0.17, "ICC(A,1)": 0.29, "ICC(C,1)": 0.71, "ICC(1,k)": 0.44, "ICC(A,k)": 0.62, "ICC(C,k)": 0.91}
    for icc_type, value in published.items():
        row = icc_table(*judges, icc_type=icc_type).loc["rating"]
        assert round(row.icc, 2) == value, icc_type
    # Shrout & Fleiss Table 3: BMS = 11.24, WMS = 6.26, JMS = 32.49, EMS = 1.02.
    row = icc_table(*judges).loc["rating"]
    np.testing.assert_allclose([row.ms_patients, row.ms_within, row.ms_readers, row.ms_error], [11.24, 6.26, 32.49, 1.02], atol=0.005)
    # Aliases: Shrout-Fleiss / pingouin names map to the McGraw-Wong ones.
    assert icc_table(*judges, icc_type="ICC2").loc["rating", "icc"] == row.icc
    assert icc_table(*judges, icc_type="ICC(3,1)").loc["rating", "icc_type"] == "ICC(C,1)"


def test_icc_table_vectorised_equals_per_feature_with_missing_patterns(unrounded_pingouin):
    rng = np.random.default_rng(5)
    n, f = 30, 40
    truth = rng.normal(size=(n, f))
    r1 = truth + rng.normal(scale=0.5, size=(n, f))
    r2 = truth + rng.normal(scale=0.5, size=(n, f))
    r1[rng.random((n, f)) < 0.05] = np.nan  # many different missingness patterns
    cols = [f"CT_tumour_original_firstorder_F{i}" for i in range(f)]
    t1, t2 = _readers([r1, r2], cols, [f"P{i}" for i in range(n)])
    table = icc_table(t1, t2)
    for j in (0, 7, 23, 39):
        ok = np.isfinite(r1[:, j])
        single = icc_table(t1.loc[ok, [cols[j]]], t2.loc[ok, [cols[j]]]).loc[cols[j]]
        np.testing.assert_allclose(table.loc[cols[j], ["icc", "ci_low", "ci_high"]].to_numpy(float),
                                   single[["icc", "ci_low", "ci_high"]].to_numpy(float), atol=1e-12)  # fmt: skip
        assert table.loc[cols[j], "n_patients"] == ok.sum()


def test_icc_constant_feature_is_nan_and_flagged_not_a_crash():
    patients = [f"P{i}" for i in range(6)]
    r1 = pd.DataFrame({"const": 4.0, "ok": [1, 2, 3, 4, 5, 6.0], "cohort": "train"}, index=patients)
    r2 = pd.DataFrame({"const": 4.0, "ok": [1.1, 2, 3.2, 4, 5, 6.1], "cohort": "train"}, index=patients)
    for icc_type in ICC_TYPES:
        table = icc_table(r1, r2, icc_type=icc_type)
        assert list(table.index) == ["const", "ok"]  # the non-numeric cohort column is not a feature
        assert table.loc["const", "constant"] and not table.loc["ok", "constant"]
        assert table.loc["const", ["icc", "ci_low", "ci_high", "F", "pval"]].isna().all()
        assert table.loc["ok", "icc"] > 0.99


def test_icc_table_mismatch_lists_patients_and_features():
    a = pd.DataFrame({"f1": [1.0, 2, 3, 4], "f2": [1.0, 3, 2, 4]}, index=["P1", "P2", "P3", "P4"])
    b = pd.DataFrame({"f1": [1.0, 2, 3, 5], "f3": [0.0, 1, 1, 0]}, index=["P1", "P2", "P3", "P9"])
    with pytest.raises(ReaderMismatchError, match=r"patients only in reader1.*P4(?s:.*)only in reader2.*P9") as err:
        icc_table(a, b)
    assert "f2" in str(err.value) and "f3" in str(err.value) and "strict=False" in str(err.value)
    table = icc_table(a, b, strict=False)
    assert list(table.index) == ["f1"] and table.attrs["patients"] == ["P1", "P2", "P3"]
    with pytest.raises(ReaderMismatchError, match="duplicate patients: P1"):
        icc_table(pd.concat([a, a.iloc[:1]]), a)
    with pytest.raises(ValueError, match="unknown icc_type"):
        icc_table(a, a, icc_type="ICC(9)")


# -- perturbed_mask ------------------------------------------------------------------
def _brute_force(mask: np.ndarray, spacing_xyz, mode: str, radius: float) -> np.ndarray:
    """Morphology by exhaustion: every voxel against every voxel of the grid, distances in mm."""
    pts = np.indices(mask.shape).reshape(3, -1).T * np.array(spacing_xyz[::-1], dtype=float)
    within = cdist(pts, pts) <= radius + 1e-9
    flat = mask.ravel().astype(bool)
    if mode == "dilate":
        out = (within & flat[None, :]).any(axis=1)
    else:  # keep a mask voxel when no background voxel of the grid is within the ball
        out = flat & ~(within & ~flat[None, :]).any(axis=1)
    return out.reshape(mask.shape)


@pytest.mark.parametrize("mode", ["erode", "dilate"])
@pytest.mark.parametrize("radius", [0.5, 1.0, 1.6, 3.0])
def test_perturbed_mask_matches_brute_force_on_anisotropic_grid(mode, radius):
    mask = np.zeros((5, 20, 20), np.uint8)
    mask[1:4, 2:18, 2:18] = 1
    mask[2, 9:11, 0:2] = 1  # a spur reaching the image edge (outside the image counts as foreground)
    for z, y, x in [(2, 4, 4), (1, 15, 12), (3, 8, 15), (2, 12, 3)]:
        mask[z, y, x] = 0  # holes: the ball must see interior background too
    img = image_from(mask, ANISO, origin=(1.0, 2.0, -3.0))
    out = perturbed_mask(img, mode, radius)
    assert out.GetPixelID() == sitk.sitkUInt8 and out.GetSpacing() == ANISO and out.GetOrigin() == img.GetOrigin()
    np.testing.assert_array_equal(arr(out).astype(bool), _brute_force(mask, ANISO, mode, radius))
    if mode == "erode":
        assert 0 < arr(out).sum() < mask.sum() and not (arr(out).astype(bool) & ~mask.astype(bool)).any()
    else:
        assert arr(out).sum() > mask.sum() and (arr(out) >= mask).all()


def test_perturbed_mask_ball_is_in_millimetres():
    mask = np.zeros((7, 21, 21), np.uint8)
    mask[3, 10, 10] = 1
    out = arr(perturbed_mask(image_from(mask, ANISO), "dilate", 3.0))
    # In-plane radius 3 mm = 6 voxels of 0.5 mm; through-plane 3 mm = exactly one 3 mm slice (included, <=).
    assert out[3, 10, 4] == 1 and out[3, 10, 3] == 0
    assert out[2, 10, 10] == 1 and out[2, 10, 9] == 0 and out[1].sum() == 0


def test_perturbed_mask_errors_name_the_fallback():
    mask = np.zeros((5, 10, 10), np.uint8)
    mask[2, 3:7, 3:7] = 1  # one slice thick: any erosion >= 3 mm (the slice spacing) empties it
    img = image_from(mask, ANISO)
    with pytest.raises(PerturbationError, match=r"removes every voxel.*mode='dilate'"):
        perturbed_mask(img, "erode", 3.0)
    with pytest.raises(PerturbationError, match=r"smaller than the smallest voxel spacing \(0.5 mm\)"):
        perturbed_mask(img, "erode", 0.2)
    with pytest.raises(ValueError, match="mode must be"):
        perturbed_mask(img, "shrink", 1.0)
    with pytest.raises(ValueError, match="positive"):
        perturbed_mask(img, "dilate", -1)
    with pytest.raises(ValueError, match="no non-zero voxel"):
        perturbed_mask(image_from(np.zeros((3, 3, 3), np.uint8)), "dilate", 1.0)


# -- ICCFilter -----------------------------------------------------------------------
def _planted(n_train: int = 30, n_test: int = 12, seed: int = 0):
    """Features of a training and a test cohort read twice: `stable_*` identical between readers
    (within 1e-3 of their spread), `noisy_*` dominated by reader noise, `mid_*` ICC around 0.9."""
    rng = np.random.default_rng(seed)
    patients = [f"P{i:03d}" for i in range(n_train + n_test)]
    cols = ([f"CT_tumour_original_firstorder_stable{i}" for i in range(6)] + [f"CT_tumour_original_glcm_noisy{i}" for i in range(6)]
            + [f"CT_tumour_original_glrlm_mid{i}" for i in range(3)])  # fmt: skip
    truth = rng.normal(size=(len(patients), len(cols))) * 10
    noise_sd = np.array([0.001] * 6 + [30.0] * 6 + [3.0] * 3)
    r1 = truth + rng.normal(size=truth.shape) * noise_sd
    r2 = truth + rng.normal(size=truth.shape) * noise_sd
    cohort = ["train"] * n_train + ["test"] * n_test
    reader1 = pd.DataFrame(r1, index=pd.Index(patients, name="patient"), columns=cols)
    reader2 = pd.DataFrame(r2, index=reader1.index, columns=cols)
    reader1.insert(0, "cohort", cohort)
    reader2.insert(0, "cohort", cohort)
    X = reader1.copy()  # the study's feature table is the first reader's
    return X, reader1, reader2, cols


def test_icc_filter_keeps_exactly_the_planted_stable_features():
    X, r1, r2, cols = _planted()
    train = X[X.cohort == "train"]
    f = ICCFilter(threshold=0.95).fit(train, readers=[r1, r2])
    assert f.selected_features_ == [c for c in cols if "stable" in c]
    out = f.transform(X)
    assert list(out.columns) == ["cohort", *f.selected_features_]  # the cohort column passes through
    assert out.index.equals(X.index) and list(f.get_feature_names_out()) == list(out.columns)
    assert f.training_patients_ == list(train.index)
    # A lower threshold also keeps the mid features; the lower CI bound is stricter than the point estimate.
    loose = ICCFilter(threshold=0.80).fit(train, readers=[r1, r2])
    assert set(loose.selected_features_) == {c for c in cols if "noisy" not in c}
    point = ICCFilter(threshold=0.88).fit(train, readers=[r1, r2])
    lower = ICCFilter(threshold=0.88, ci_bound="lower").fit(train, readers=[r1, r2])
    assert set(lower.selected_features_) < set(point.selected_features_)
    assert (lower.icc_.loc[lower.selected_features_, "ci_low"] >= 0.88).all()


def test_icc_filter_no_leakage_from_test_rows_of_the_reader_tables():
    X, r1, r2, cols = _planted()
    train, test = X[X.cohort == "train"], X[X.cohort == "test"]
    ref = ICCFilter(threshold=0.95).fit(train, readers=[r1.loc[train.index], r2.loc[train.index]])
    # Corrupt the second reading of the test patients and add new test-only patients: a leaking filter
    # would see the stable features collapse (checked below on all patients), this one must not.
    r2_bad = r2.copy()
    stable = [c for c in cols if "stable" in c]
    r2_bad.loc[test.index, stable] = np.random.default_rng(1).normal(size=(len(test), len(stable))) * 100
    extra = pd.DataFrame(np.random.default_rng(2).normal(size=(5, len(cols))), index=[f"N{i}" for i in range(5)], columns=cols)
    r1_more, r2_more = pd.concat([r1, extra.assign(cohort="test")]), pd.concat([r2_bad, (extra * -3).assign(cohort="test")])
    fitted = ICCFilter(threshold=0.95).fit(train, readers=[r1_more, r2_more])
    assert fitted.selected_features_ == ref.selected_features_ == stable
    pd.testing.assert_frame_equal(fitted.icc_, ref.icc_)
    leaky = icc_table(r1_more, r2_more, strict=False)
    assert (leaky.loc[stable, "icc"] < 0.5).all()  # what a filter fitted on all patients would have seen
    # Transforming the test cohort never touches the fitted state.
    before = fitted.selected_features_.copy()
    fitted.transform(test)
    assert fitted.selected_features_ == before
    # A precomputed table that includes test patients is rejected (named), one of training patients accepted.
    with pytest.raises(ReaderMismatchError, match=r"not training rows of X: P030"):
        ICCFilter().fit(train, icc=icc_table(r1, r2))
    pre = ICCFilter(threshold=0.95).fit(train, icc=icc_table(r1.loc[train.index], r2.loc[train.index]))
    assert pre.selected_features_ == stable


def _drop_cohort(X: pd.DataFrame) -> pd.DataFrame:
    return X.drop(columns=["cohort"])


def test_icc_filter_refits_per_fold_in_cross_validation():
    X, r1, r2, cols = _planted(n_train=40, n_test=0)
    cv = KFold(4, shuffle=True, random_state=0)
    folds = list(cv.split(X))
    stable = [c for c in cols if "stable" in c]
    # One gross reader disagreement per fold: stable_j is ruined by a patient of fold j's test part only,
    # so stable_j must be kept exactly when fold j's training rows are used, and dropped otherwise.
    r2 = r2.copy()
    for j, (_, test_idx) in enumerate(folds):
        r2.loc[X.index[test_idx[0]], stable[j]] += 1000.0
    y = pd.Series(np.arange(len(X)) % 2, index=X.index)
    pipe = Pipeline([("icc", ICCFilter(threshold=0.9)), ("drop", FunctionTransformer(_drop_cohort)), ("scale", StandardScaler())])
    res = cross_validate(pipe, X, y, cv=cv, params={"icc__readers": [r1, r2]}, return_estimator=True,
                         scoring=lambda est, X_, y_: 0.0)  # fmt: skip
    for j, (est, (train_idx, _)) in enumerate(zip(res["estimator"], folds, strict=True)):
        fitted = est.named_steps["icc"]
        direct = ICCFilter(threshold=0.9).fit(X.iloc[train_idx], readers=[r1, r2])
        assert fitted.selected_features_ == direct.selected_features_
        assert set(fitted.training_patients_) == set(X.index[train_idx])
        kept_ruined = [c for c in stable[:4] if c in fitted.selected_features_]
        assert kept_ruined == [stable[j]]
        assert set(stable[4:]) <= set(fitted.selected_features_)


def test_icc_filter_estimator_contract_and_errors():
    X, r1, r2, _ = _planted()
    train = X[X.cohort == "train"]
    f = ICCFilter(threshold=0.7, icc_type="ICC(C,1)", ci_bound="lower")
    assert f.get_params() == {"threshold": 0.7, "icc_type": "ICC(C,1)", "ci_bound": "lower", "unscored": "error"}
    g = clone(f)
    assert g.get_params() == f.get_params() and not hasattr(g, "selected_features_")
    f.fit(train, readers=[r1, r2])
    assert f.icc_["icc_type"].eq("ICC(C,1)").all()
    with pytest.raises(ValueError, match="exactly one of icc="):
        ICCFilter().fit(train)
    with pytest.raises(ReaderMismatchError, match="holds ICC\\(A,1\\) but the filter uses ICC\\(C,1\\)"):
        ICCFilter(icc_type="ICC3").fit(train, icc=icc_table(r1.loc[train.index], r2.loc[train.index]))
    with_age = train.assign(age=np.arange(len(train), dtype=float))
    with pytest.raises(ValueError, match=r"have no ICC: age.*unscored='passthrough'"):
        ICCFilter().fit(with_age, readers=[r1, r2])
    assert "age" in ICCFilter(unscored="passthrough").fit(with_age, readers=[r1, r2]).get_feature_names_out()
    assert "age" not in ICCFilter(unscored="drop").fit(with_age, readers=[r1, r2]).get_feature_names_out()
    with pytest.raises(ValueError, match=r"columns seen in fit \(missing: CT_tumour_original_firstorder_stable0"):
        f.transform(train.drop(columns=["CT_tumour_original_firstorder_stable0"]))
    with pytest.raises(ValueError, match="ci_bound must be"):
        ICCFilter(ci_bound="upper").fit(train, readers=[r1, r2])
    with pytest.warns(UserWarning, match="kept no feature"):
        ICCFilter(threshold=1.0).fit(train, readers=[r1, r2])
    # set_output(pandas) works because the output names are declared.
    out = ICCFilter(threshold=0.95).set_output(transform="pandas").fit_transform(train, readers=[r1, r2])
    assert isinstance(out, pd.DataFrame) and "cohort" in out.columns


# -- retained_counts -----------------------------------------------------------------
def test_retained_counts_parses_series_and_rois_with_underscores():
    names = (["MR_T1_tumour_original_firstorder_Mean", "MR_T1_tumour_wavelet-LLH_glcm_Idm", "MR_T1_ring_5mm_original_firstorder_Mean",
              "MR_tumour_original_firstorder_Mean", "MR_tumour_original_shape_Sphericity", "CT_ring_5mm_log-sigma-1-mm-3D_gldm_DE"])  # fmt: skip
    icc = pd.DataFrame({"icc": [0.95, 0.5, 0.85, np.nan, 0.99, 0.81], "ci_low": [0.9, 0.3, 0.7, np.nan, 0.97, 0.6],
                        "constant": [False, False, False, True, False, False]}, index=pd.Index(names, name="feature"))  # fmt: skip
    groups = [(s, r) for s in ("CT", "MR", "MR_T1") for r in ("tumour", "ring_5mm")]
    table = retained_counts(icc, 0.80, groups)
    got = table.set_index(["series", "roi"])
    assert got.loc[("MR_T1", "tumour"), ["extracted", "retained"]].tolist() == [2, 1]
    assert got.loc[("MR_T1", "ring_5mm"), ["extracted", "retained"]].tolist() == [1, 1]
    assert got.loc[("MR", "tumour"), ["extracted", "constant", "retained"]].tolist() == [2, 1, 1]  # MR_T1 not counted as MR
    assert got.loc[("CT", "tumour"), "extracted"] == 0 and got.loc[("CT", "ring_5mm"), "retained"] == 1
    assert got.loc[("Total", ""), ["extracted", "retained", "retained_percent"]].tolist() == [6, 4, 66.7]
    lower = retained_counts(icc, 0.80, groups, ci_bound="lower").set_index(["series", "roi"])
    assert lower.loc[("Total", ""), "retained"] == 2
    with pytest.raises(ValueError, match="match no \\(series, roi\\) prefix: MR_T1_tumour"):
        retained_counts(icc, 0.8, [("MR", "tumour")])


# -- reader agreement ----------------------------------------------------------------
def test_cohens_kappa_matches_sklearn_and_statsmodels_ci():
    rng = np.random.default_rng(11)
    cats = np.array(["infiltrative", "pushing", "mixed"])
    a = rng.choice(cats, 80)
    b = np.where(rng.random(80) < 0.7, a, rng.choice(cats, 80))
    res = cohens_kappa(a, b)
    assert res["kappa"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    table = pd.crosstab(pd.Categorical(a, categories=cats), pd.Categorical(b, categories=cats), dropna=False).to_numpy()
    ref = sm_cohens_kappa(table)
    assert res["se"] == pytest.approx(ref.std_kappa, abs=1e-12)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((ref.kappa_low, ref.kappa_upp), abs=1e-12)
    same = cohens_kappa(["x"] * 5, ["x"] * 5)
    assert np.isnan(same["kappa"])  # chance agreement 1: undefined, not a crash


def test_reader_agreement_table_icc_and_kappa_rows(unrounded_pingouin):
    rng = np.random.default_rng(4)
    patients = [f"P{i:02d}" for i in range(40)]
    size = rng.uniform(20, 150, 40)
    grade = rng.integers(1, 4, 40)
    margin = rng.choice(["smooth", "lobulated", "spiculated"], 40)
    r1 = pd.DataFrame({"size_mm": size, "grade": grade, "margin": margin}, index=patients)
    r2 = pd.DataFrame({"size_mm": size + rng.normal(0, 8, 40), "grade": np.clip(grade + (rng.random(40) < 0.2), 1, 3),
                       "margin": np.where(rng.random(40) < 0.8, margin, "smooth")}, index=patients)  # fmt: skip
    r2.loc["P03", "size_mm"] = np.nan  # one missing reading: 39 patients for size
    kinds = {"size_mm": "continuous", "grade": "ordinal", "margin": "nominal"}
    table = reader_agreement_table(r1, r2, ["size_mm", "grade", "margin"], kinds).set_index("variable")
    ok = r2["size_mm"].notna()
    ref = _pingouin_icc([r1.loc[ok], r2.loc[ok]], "size_mm").loc["ICC(A,1)"]
    assert table.loc["size_mm", ["estimate", "ci_low", "ci_high"]].tolist() == pytest.approx([ref.ICC, *ref.CI95], abs=1e-8)
    assert table.loc["size_mm", "n_patients"] == 39 and table.loc["grade", "statistic"] == "ICC(A,1)"
    assert table.loc["margin", "statistic"] == "Cohen's kappa"
    assert table.loc["margin", "estimate"] == pytest.approx(cohen_kappa_score(r1["margin"], r2["margin"]), abs=1e-12)
    est, lo, hi = table.loc["size_mm", ["estimate", "ci_low", "ci_high"]]
    assert table.loc["size_mm", "text"] == f"{est:.2f} ({lo:.2f}-{hi:.2f})"
    assert set(table["agreement"]) <= {"poor", "moderate", "good", "excellent", "slight", "fair", "substantial", "almost perfect"}
    with pytest.raises(ValueError, match="'margin' is not numeric"):
        reader_agreement_table(r1, r2, ["margin"], ["ordinal"])
    with pytest.raises(ReaderMismatchError, match="only reader1: P00"):
        reader_agreement_table(r1, r2.drop(index="P00"), ["grade"], ["ordinal"])
