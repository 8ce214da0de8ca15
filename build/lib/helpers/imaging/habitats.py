"""Habitats and the intratumoral-heterogeneity (ITH) score.

Habitats are found by cohort-level K-means on pooled voxel intensities of
co-registered series (:class:`HabitatClusterer`). The clusterer is a
scikit-learn transformer (voxel -> habitat label), so a cross-validation loop
can clone and refit it on each training fold; patients it predicts never
change its fitted state.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage, sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, pairwise_distances_argmin
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from helpers.imaging.rois import _binary_image, _check_3d, _same_grid

__all__ = [
    "voxel_matrix",
    "HabitatClusterer",
    "habitat_map",
    "habitat_fractions",
    "habitat_masks",
    "ith_score",
    "ith_scores_by_k",
]


# -- habitats --------------------------------------------------------------
def voxel_matrix(images: Sequence[sitk.Image], mask: sitk.Image) -> np.ndarray:
    """Intensities of co-registered series at the voxels of a mask.

    Each image whose geometry differs from the mask's (e.g. PET at 4.7 mm vs a
    mask drawn on 1 mm CT) is resampled onto the mask grid with linear
    interpolation, in physical space (the images must already be registered).

    Parameters
    ----------
    images : sequence of SimpleITK.Image
        One image per series (channel), in a fixed order used for every patient.
    mask : SimpleITK.Image
        Region whose non-zero voxels are sampled; its grid is the reference.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of shape ``(n_voxels_in_mask, n_series)``; rows are the
        mask voxels in C order of the z, y, x array (z slowest, x fastest).

    Raises
    ------
    ValueError
        When no image is given, the mask is empty, or a mask voxel lies outside
        an image's field of view.
    """
    if len(images) == 0:
        raise ValueError("images is empty; pass one image per series, e.g. [ct, pet]")
    _check_3d(mask, "mask")
    inside = sitk.GetArrayViewFromImage(mask) > 0
    if not inside.any():
        raise ValueError("the mask is empty; there are no voxels to sample")
    columns = []
    for i, img in enumerate(images):
        _check_3d(img, f"images[{i}]")
        img = sitk.Cast(img, sitk.sitkFloat64)
        if not _same_grid(img, mask):
            # NaN outside the image marks mask voxels the image does not cover, instead of a silent 0.
            img = sitk.Resample(img, mask, sitk.Transform(), sitk.sitkLinear, math.nan, sitk.sitkFloat64)
        values = sitk.GetArrayViewFromImage(img)[inside]
        if np.isnan(values).any():
            n = int(np.isnan(values).sum())
            raise ValueError(
                f"images[{i}]: {n} of {values.size} mask voxels lie outside the image's field of view "
                "(or the image holds NaN); check the registration or crop the mask to the image"
            )
        columns.append(values)
    return np.column_stack(columns)


def _as_voxels(x: np.ndarray, what: str, n_features: int | None = None) -> np.ndarray:
    if sparse.issparse(x):
        raise TypeError(f"{what}: sparse input is not supported; pass a dense (n_voxels, n_series) array")
    raw = np.asarray(x)
    if np.iscomplexobj(raw):
        raise ValueError(f"{what}: Complex data not supported; intensities must be real numbers")
    arr = np.asarray(raw, dtype=float)
    if arr.ndim != 2:
        raise ValueError(
            f"{what} must be a 2D array (n_voxels, n_series), got shape {arr.shape}; build it with voxel_matrix "
            "(Reshape your data with x.reshape(-1, 1) for a single series)"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{what} has no voxel (shape {arr.shape}); check that the mask is not empty")
    if arr.shape[1] == 0:
        raise ValueError(f"{what} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
    if n_features is not None and arr.shape[1] != n_features:
        # After fit, scikit-learn's wording first; during fit (a list of patients) the patients are compared.
        lead = f"X has {arr.shape[1]} features, but HabitatClusterer is expecting {n_features} features as input: " if what == "voxels" else ""
        raise ValueError(
            f"{lead}{what} has {arr.shape[1]} series (columns) but the clusterer was fitted on {n_features}; "
            "pass the same series in the same order as for fit"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds NaN or infinite intensities; fix or mask those voxels first")
    return arr


def _content_seed(arr: np.ndarray) -> int:
    # Seeding a patient's subsample from its voxels (not its list position) makes the fit
    # independent of the order of the training patients.
    return int.from_bytes(hashlib.sha256(np.ascontiguousarray(arr).tobytes()).digest()[:8], "little")


class HabitatClusterer(TransformerMixin, BaseEstimator):
    """Cohort-level K-means habitats on pooled voxel intensities (a transformer: voxel -> habitat label).

    Training voxels of all patients are pooled (each patient subsampled to at
    most ``max_voxels_per_patient`` voxels), z-scored per channel with
    statistics of the pooled training voxels, and clustered with K-means for
    each K in ``k_range``; the K with the highest Calinski-Harabasz index is
    kept. Clusters are re-ordered by ascending centroid of the first channel
    (ties broken by the next channels) so habitat 1..K keeps its meaning
    across runs and folds. The fit does not depend on the order of the patients
    (each patient's subsample is seeded from its own voxels and the pool is
    sorted before clustering).

    Input: a voxel matrix has one row per voxel and one column per series
    (channel), as :func:`voxel_matrix` builds it. :meth:`fit` takes the
    training voxels either as a list with one matrix per patient, or as one
    pooled matrix with the patient of every row in ``groups`` (the
    scikit-learn form, e.g. ``np.concatenate(voxels)`` and
    ``np.repeat(patient_ids, [len(v) for v in voxels])``); both give the
    identical fit. The patient is needed only for the per-patient cap
    ``max_voxels_per_patient``; a matrix without ``groups`` counts as one
    patient. :meth:`transform` / :meth:`predict` take any voxel matrix.

    Parameters
    ----------
    k_range : tuple of int, default (3, 10)
        Smallest and largest K searched, both inclusive (2 <= low <= high).
    k : int, optional
        Fixed number of habitats (>= 2); overrides the search when given.
    max_voxels_per_patient : int or None, default 5000
        Per-patient cap of training voxels (seeded random subsample), so large
        tumours do not dominate and fitting stays fast; ``None`` keeps all.
    standardize : bool, default True
        Z-score each channel with the mean and SD of the training voxels.
    n_init : int, default 10
        K-means restarts per K.
    random_state : int, RandomState or None, default 0
        Seed of the subsampling and of K-means.

    Attributes
    ----------
    k_ : int
        Number of habitats selected.
    ch_scores_ : pandas.DataFrame
        Columns ``k`` and ``calinski_harabasz``, one row per K fitted.
    mean_, scale_ : numpy.ndarray
        Per-channel standardization (0 and 1 when ``standardize=False``).
    centroids_ : numpy.ndarray
        ``(k_, n_features_in_)`` centroids in standardized space; row i is habitat i + 1.
    n_features_in_ : int
        Number of series (channels).
    feature_names_in_ : numpy.ndarray
        Series (column) names, only when fitted on a DataFrame.
    n_patients_ : int
        Number of training patients (groups).
    n_training_voxels_ : int
        Number of pooled training voxels clustered.

    Notes
    -----
    scikit-learn's common estimator checks run on the pooled-matrix form
    (``tests/test_estimator_checks.py``). ``transform`` returns integer labels
    whatever the input dtype (no dtype is preserved).
    """

    def __init__(
        self,
        *,
        k_range: tuple[int, int] = (3, 10),
        k: int | None = None,
        max_voxels_per_patient: int | None = 5000,
        standardize: bool = True,
        n_init: int = 10,
        random_state: int | np.random.RandomState | None = 0,
    ):
        self.k_range = k_range
        self.k = k
        self.max_voxels_per_patient = max_voxels_per_patient
        self.standardize = standardize
        self.n_init = n_init
        self.random_state = random_state

    def _candidate_ks(self) -> list[int]:
        if self.k is not None:
            if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 2:
                raise ValueError(f"k={self.k!r}: a fixed number of habitats must be an integer >= 2 (or None to search k_range)")
            return [int(self.k)]
        try:
            low, high = (int(v) for v in self.k_range)
            valid = all(float(v) == int(v) for v in self.k_range)
        except (TypeError, ValueError):
            valid = False
        if not valid or not 2 <= low <= high:
            raise ValueError(
                f"k_range={self.k_range!r} is invalid; give (low, high) integers with 2 <= low <= high, "
                "e.g. (3, 10) (both ends are searched; the Calinski-Harabasz index needs K >= 2)"
            )
        return list(range(low, high + 1))

    def fit(self, X: Sequence[np.ndarray] | np.ndarray, y: object = None, *, groups: object = None) -> "HabitatClusterer":
        """Learn habitats from the training patients' voxels.

        Parameters
        ----------
        X : list of numpy.ndarray, or array-like of shape (n_voxels, n_series)
            Either one ``(n_voxels, n_series)`` array per training patient
            (from :func:`voxel_matrix`), same series order for all; or the
            pooled voxels of all training patients in one matrix, with
            ``groups`` (any 2-D array-like: a nested list of rows is one
            matrix, a list of 2-D arrays is a list of patients).
        y : ignored
            Present for scikit-learn API compatibility.
        groups : array-like of shape (n_voxels,), optional
            Patient of every row of a pooled matrix (any hashable ids); each
            patient is capped at ``max_voxels_per_patient`` voxels. Default:
            all rows are one patient. Not allowed with a list.

        Returns
        -------
        HabitatClusterer
            The fitted estimator.

        Raises
        ------
        ValueError
            On an invalid ``k``/``k_range``/``max_voxels_per_patient``, arrays
            of the wrong shape or with non-finite values, ``groups`` of the
            wrong length, or when there are too few training voxels for the
            largest K.
        """
        ks = self._candidate_ks()
        cap = self.max_voxels_per_patient
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 1):
            raise ValueError(f"max_voxels_per_patient={cap!r} must be a positive integer or None")
        if isinstance(X, (list, tuple)) and (len(X) == 0 or np.ndim(X[0]) == 2):  # a list of patients, not of rows
            if groups is not None:
                raise ValueError("groups is for a pooled (n_voxels, n_series) matrix; a list already holds one array per patient")
            if len(X) == 0:
                raise ValueError("patient_voxels must be a non-empty list with one (n_voxels, n_series) array per training patient")
            arrays = [_as_voxels(X[0], "patient_voxels[0]")]
            arrays += [_as_voxels(v, f"patient_voxels[{i}]", arrays[0].shape[1]) for i, v in enumerate(X[1:], 1)]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_  # a list has no column names (a refit must not keep those of an earlier fit)
        else:
            pooled = _as_voxels(X, "X")
            validate_data(self, X, reset=True, skip_check_array=True)  # records n_features_in_ and, for a DataFrame, feature_names_in_
            if groups is None:
                arrays = [pooled]
            else:
                g = np.asarray(groups)
                if g.ndim != 1 or g.shape[0] != pooled.shape[0]:
                    raise ValueError(f"groups must give the patient of every voxel: {pooled.shape[0]} values expected, got shape {g.shape}")
                _, codes = np.unique(g, return_inverse=True)
                order = np.argsort(codes, kind="stable")  # stable: row order within a patient kept
                arrays = np.split(pooled[order], np.cumsum(np.bincount(codes))[:-1])
        base_seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        pooled_rows = []
        for arr in arrays:
            if cap is not None and arr.shape[0] > cap:
                rng = np.random.default_rng([base_seed, _content_seed(arr)])
                arr = arr[np.sort(rng.choice(arr.shape[0], size=cap, replace=False))]
            pooled_rows.append(arr)
        X = np.concatenate(pooled_rows)
        # A canonical row order makes K-means (whose initialisation picks rows by index) blind to patient order.
        X = X[np.lexsort(X.T[::-1])]
        if X.shape[0] <= max(ks):
            raise ValueError(
                f"{X.shape[0]} training voxels ({X.shape[0]} sample{'' if X.shape[0] == 1 else 's'}) cannot form {max(ks)} habitats "
                "(need more voxels than K); lower k / k_range or add training patients"
            )
        if self.standardize:
            mean = X.mean(axis=0)
            scale = X.std(axis=0)
            # A constant channel carries no information; scale 1 avoids dividing by zero (as StandardScaler does).
            scale[scale == 0] = 1.0
        else:
            mean, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
        Z = (X - mean) / scale

        rows, models = [], {}
        for k in ks:
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=base_seed).fit(Z)
            n_found = len(np.unique(km.labels_))
            ch = calinski_harabasz_score(Z, km.labels_) if n_found >= 2 else math.nan
            rows.append({"k": k, "calinski_harabasz": float(ch)})
            models[k] = km
        scores = pd.DataFrame(rows, columns=["k", "calinski_harabasz"])
        if scores["calinski_harabasz"].isna().all():
            raise ValueError("the training voxels are all identical; habitats cannot be separated (check the images)")
        # Ties go to the smallest K (idxmax returns the first maximum).
        best_k = int(scores.loc[scores["calinski_harabasz"].idxmax(), "k"])
        centroids = models[best_k].cluster_centers_
        order = np.lexsort(centroids.T[::-1])

        self.ch_scores_ = scores
        self.k_ = best_k
        self.mean_ = mean
        self.scale_ = scale
        self.centroids_ = centroids[order].copy()
        self.n_features_in_ = X.shape[1]
        self.n_patients_ = len(arrays)
        self.n_training_voxels_ = X.shape[0]
        return self

    def _voxels(self, X: object) -> np.ndarray:
        check_is_fitted(self, "centroids_")
        arr = _as_voxels(X, "voxels", self.n_features_in_)
        validate_data(self, X, reset=False, skip_check_array=True)  # column names, when fitted on a DataFrame
        return arr

    def standardized(self, X: np.ndarray) -> np.ndarray:
        """Voxels in the standardized space of the training data.

        Parameters
        ----------
        X : array-like of shape (n_voxels, n_series)
            Series in the order used for fit.

        Returns
        -------
        numpy.ndarray
            ``(X - mean_) / scale_``, the space ``centroids_`` live in.
        """
        arr = self._voxels(X)
        return (arr - self.mean_) / self.scale_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Habitat (1..k_) of each voxel: nearest centroid after training standardization.

        Parameters
        ----------
        X : array-like of shape (n_voxels, n_series)
            Series in the order used for fit.

        Returns
        -------
        numpy.ndarray
            ``int64`` labels in 1..``k_``, shape ``(n_voxels,)``. The fitted state is not changed.
        """
        Z = self.standardized(X)
        return pairwise_distances_argmin(Z, self.centroids_).astype(np.int64) + 1

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Habitat label of each voxel as one column (the transformer form of :meth:`predict`).

        Parameters
        ----------
        X : array-like of shape (n_voxels, n_series)
            Series in the order used for fit.

        Returns
        -------
        numpy.ndarray
            ``int64`` labels in 1..``k_``, shape ``(n_voxels, 1)`` (column ``habitat``).
        """
        return self.predict(X)[:, None]

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """The single output column, ``habitat``."""
        check_is_fitted(self, "centroids_")
        _check_feature_names_in(self, input_features)
        return np.asarray(["habitat"], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = []  # the output is integer labels whatever the input dtype
        return tags


def habitat_map(images: Sequence[sitk.Image], mask: sitk.Image, clusterer: HabitatClusterer) -> sitk.Image:
    """Habitat label map of one patient.

    Parameters
    ----------
    images : sequence of SimpleITK.Image
        The patient's series, in the order the clusterer was fitted on
        (resampled onto the mask grid when needed, see :func:`voxel_matrix`).
    mask : SimpleITK.Image
        Tumour (or fused) region; its grid is the output grid.
    clusterer : HabitatClusterer
        A fitted clusterer.

    Returns
    -------
    SimpleITK.Image
        ``sitkUInt8`` label map: 0 outside the mask, 1..K inside.
    """
    check_is_fitted(clusterer, "centroids_")
    if clusterer.k_ > 255:
        raise ValueError(f"{clusterer.k_} habitats do not fit an 8-bit label map; use k <= 255")
    labels = clusterer.predict(voxel_matrix(images, mask))
    return _labels_to_image(labels, mask)


def _labels_to_image(labels: np.ndarray, mask: sitk.Image) -> sitk.Image:
    inside = sitk.GetArrayViewFromImage(mask) > 0
    out = np.zeros(inside.shape, dtype=np.uint8)
    out[inside] = labels
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(mask)
    return img


def _label_array(label_map: sitk.Image | np.ndarray) -> np.ndarray:
    arr = sitk.GetArrayFromImage(label_map) if isinstance(label_map, sitk.Image) else np.asarray(label_map)
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"label map must hold integer labels (0 = background), got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise ValueError("label map holds negative labels; use 0 for background and 1..K for habitats")
    return arr


def _check_k(k: int, arr: np.ndarray) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer (the number of habitats, clusterer.k_)")
    top = int(arr.max()) if arr.size else 0
    if top > k:
        raise ValueError(f"label map holds label {top} > k={k}; pass the clusterer's k_")
    return int(k)


def habitat_fractions(label_map: sitk.Image, k: int) -> dict[str, float]:
    """Fraction of the tumour's voxels in each habitat.

    Parameters
    ----------
    label_map : SimpleITK.Image
        Habitat map (0 outside the tumour, 1..k inside), e.g. from :func:`habitat_map`.
    k : int
        Number of habitats (``clusterer.k_``); absent habitats get 0.0.

    Returns
    -------
    dict
        ``habitat_1`` ... ``habitat_k`` -> fraction in [0, 1]; the values sum to 1.
    """
    arr = _label_array(label_map)
    k = _check_k(k, arr)
    counts = np.bincount(arr.ravel(), minlength=k + 1)[1:]
    total = counts.sum()
    if total == 0:
        raise ValueError("label map has no tumour voxel (all 0); check the mask used to build it")
    return {f"habitat_{i}": float(c / total) for i, c in enumerate(counts, 1)}


def habitat_masks(label_map: sitk.Image, k: int) -> dict[str, sitk.Image]:
    """One binary mask per habitat.

    A habitat may be absent from a given patient (the clusters are learnt on
    the cohort), so a mask may be empty: check :func:`habitat_fractions` (or
    the mask's sum) before extracting features, since feature extractors such
    as pyradiomics reject empty masks.

    Parameters
    ----------
    label_map : SimpleITK.Image
        Habitat map (0 outside, 1..k inside).
    k : int
        Number of habitats (``clusterer.k_``).

    Returns
    -------
    dict
        ``habitat_1`` ... ``habitat_k`` -> ``sitkUInt8`` mask (0/1) with the
        geometry of ``label_map``.
    """
    arr = _label_array(label_map)
    k = _check_k(k, arr)
    return {f"habitat_{i}": _binary_image(arr == i, label_map) for i in range(1, k + 1)}


# -- intratumoral heterogeneity ---------------------------------------------
def ith_score(
    label_map: sitk.Image | np.ndarray,
    connectivity: Literal["full", "face"] = "full",
    min_region_voxels: int = 1,
) -> float:
    """Intratumoral heterogeneity score (ITHscore) of a cluster label map.

    ``ITH = 1 - (1 / S_total) * sum_i (S_i_max / n_i)``, where for each cluster
    label i present, ``n_i`` is its number of connected regions and
    ``S_i_max`` the voxel count of its largest region, and ``S_total`` the
    number of tumour (non-zero) voxels (Li J, et al., ITHscore, Eur Radiol
    2022/2023). 0 means every cluster is one connected region; values near 1
    mean clusters fragmented into many small regions.

    Connectivity: the score is computed on the whole map (3D for a 3D map,
    2D for a 2D array); the reference ``ITHscore`` package (0.3.3) works on one
    2D slice with 8-connectivity. ``"full"`` (default) is that neighbourhood
    and its 3D analogue: 8 in 2D, 26 in 3D (edge and corner neighbours count,
    so a checkerboard is two connected regions and scores 0). ``"face"``: 4 in
    2D, 6 in 3D (a checkerboard is all single voxels and scores near 1).
    Connectivity is topological, not in millimetres: on anisotropic grids,
    ``"full"`` also links voxels diagonally across thick slices.

    Parameters
    ----------
    label_map : SimpleITK.Image or numpy.ndarray
        Cluster labels (0 = background/outside the tumour, 1..K inside), 2D or 3D.
    connectivity : {"full", "face"}, default "full"
        Neighbourhood defining connected regions (see above).
    min_region_voxels : int, default 1
        Regions smaller than this are ignored in ``S_i_max`` and ``n_i`` (they
        still count in ``S_total``); a cluster whose regions are all ignored
        contributes nothing. 1 is the published formula; 2 reproduces the
        package's ``calITHscore`` default, which drops single-pixel regions.

    Returns
    -------
    float
        ITH score in [0, 1] (1 only when ``min_region_voxels`` ignores every region).

    Raises
    ------
    ValueError
        When the map has no non-zero voxel or the arguments are invalid.

    Notes
    -----
    Unlike the package, every non-zero label is counted; the package skips the
    lowest label present, which is only background when the map contains 0.
    """
    arr = _label_array(label_map)
    if arr.ndim not in (2, 3):
        raise ValueError(f"label map must be 2D or 3D, got {arr.ndim}D")
    if connectivity not in ("full", "face"):
        raise ValueError(f"connectivity={connectivity!r}; use 'full' (8 in 2D / 26 in 3D) or 'face' (4 in 2D / 6 in 3D)")
    if isinstance(min_region_voxels, bool) or not isinstance(min_region_voxels, (int, np.integer)) or min_region_voxels < 1:
        raise ValueError(f"min_region_voxels={min_region_voxels!r} must be an integer >= 1 (1 keeps every region)")
    total = int(np.count_nonzero(arr))
    if total == 0:
        raise ValueError("label map has no tumour voxel (all 0); the ITH score is undefined")
    structure = ndimage.generate_binary_structure(arr.ndim, arr.ndim if connectivity == "full" else 1)
    acc = 0.0
    for lab in np.unique(arr[arr > 0]):
        regions, _ = ndimage.label(arr == lab, structure=structure)
        sizes = np.bincount(regions.ravel())[1:]
        sizes = sizes[sizes >= min_region_voxels]
        if sizes.size:
            acc += sizes.max() / sizes.size
    return float(1.0 - acc / total)


def ith_scores_by_k(
    images: Sequence[sitk.Image],
    mask: sitk.Image,
    train_voxels: Sequence[np.ndarray],
    ks: Iterable[int] = range(2, 9),
    random_state: int | None = 0,
    *,
    connectivity: Literal["full", "face"] = "full",
    clusterer_params: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """ITH score of one patient for a sweep of fixed cluster numbers.

    For each K a :class:`HabitatClusterer` with ``k=K`` is fitted on
    ``train_voxels`` only, the patient's habitat map is predicted and its ITH
    score computed.

    Parameters
    ----------
    images : sequence of SimpleITK.Image
        The patient's series (same order as the training voxels' columns).
    mask : SimpleITK.Image
        The patient's tumour mask (grid of the habitat maps).
    train_voxels : list of numpy.ndarray
        Training patients' voxel matrices (see :meth:`HabitatClusterer.fit`).
    ks : iterable of int, default range(2, 9)
        Cluster numbers to sweep (each >= 2).
    random_state : int or None, default 0
        Seed passed to every clusterer.
    connectivity : {"full", "face"}, default "full"
        See :func:`ith_score`.
    clusterer_params : mapping, optional
        Other :class:`HabitatClusterer` parameters (``max_voxels_per_patient``,
        ``standardize``, ``n_init``).

    Returns
    -------
    pandas.DataFrame
        Columns ``k``, ``ith_score`` and ``habitats_present`` (habitats with at
        least one voxel in this patient), one row per K.
    """
    params = dict(clusterer_params or {})
    clash = {"k", "k_range", "random_state"} & params.keys()
    if clash:
        raise ValueError(f"clusterer_params must not set {sorted(clash)}; use the `ks` and `random_state` arguments")
    ks = list(ks)
    if not ks:
        raise ValueError("ks is empty; give the cluster numbers to sweep, e.g. range(2, 9)")
    voxels = voxel_matrix(images, mask)  # sampled once, reused for every K
    rows = []
    for k in ks:
        clusterer = HabitatClusterer(k=k, random_state=random_state, **params).fit(train_voxels)
        label_map = _labels_to_image(clusterer.predict(voxels), mask)
        present = len(np.unique(sitk.GetArrayViewFromImage(label_map)[sitk.GetArrayViewFromImage(mask) > 0]))
        rows.append({"k": int(k), "ith_score": ith_score(label_map, connectivity=connectivity), "habitats_present": present})
    return pd.DataFrame(rows, columns=["k", "ith_score", "habitats_present"])
