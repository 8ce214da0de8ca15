"""Align patient-level vectors (y, time, event, scores) with X and with each other by patient label.

One policy for every public function of :mod:`helpers` that takes an outcome-like vector together with a
feature table or with other vectors:

1. **X is a DataFrame, the vector a pandas Series (or DataFrame)**: the vector must carry exactly the same
   set of index labels as ``X.index``, each once; it is reordered to X's row order. Labels missing on
   either side (or duplicated) raise :class:`~helpers.errors.InputDataError` naming the counts, up to 5
   patients and the fix.
2. **Several vectors without X** (e.g. ``auc_ci(y, score)``, ``harrell_c(time, event, risk)``): when two
   or more are pandas objects, each is aligned to the index of the *first* pandas one, with the same rule
   and the same error.
3. **numpy arrays, lists and other non-pandas inputs** are paired by position, as before; length checks stay
   with the calling function (and keep their messages).
4. A Series with a default ``RangeIndex`` (0..n-1) beside patient labels is a mismatch, not a positional
   pairing: silent positional use of differently indexed inputs is exactly the bug this module removes.
5. Inputs that are already aligned (equal index, same order) are returned as the *same object*, so the
   results on aligned inputs are bitwise identical to those computed before alignment existed.

Only numpy, pandas and :mod:`helpers.errors` are imported, so the statistics modules stay light.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pandas as pd

from helpers.errors import InputDataError

__all__ = ["align_series", "align_to_frame", "align_to_index", "is_labelled"]

T = TypeVar("T")

#: Patients named in an error message (the counts are always given in full).
_SHOWN = 5


def is_labelled(values: object) -> bool:
    """True for pandas Series and DataFrames (inputs aligned by index label); False for everything else."""
    return isinstance(values, (pd.Series, pd.DataFrame))


def _names(labels: pd.Index | np.ndarray | list) -> str:
    """Up to :data:`_SHOWN` labels as short text (long identifiers cut, so messages stay short)."""
    shown = [str(v) if len(str(v)) <= 24 else str(v)[:21] + "..." for v in list(labels)[:_SHOWN]]
    return ", ".join(shown) + (", ..." if len(labels) > _SHOWN else "")


def _is_default_range(index: pd.Index) -> bool:
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def _mismatch(index: pd.Index, other: pd.Index, what: str, ref: str) -> InputDataError:
    """The error for two indexes whose label sets differ (or hold duplicates)."""
    fix = f"pass {what} indexed by the same patients as {ref}"
    if _is_default_range(other) != _is_default_range(index):
        plain = what if _is_default_range(other) else ref
        fix += f" ({plain} has a default 0..n-1 index: set it to the patient identifiers)"
    for side, idx in ((ref, index), (what, other)):
        if idx.has_duplicates:
            dups = idx[idx.duplicated()].unique()
            return InputDataError(f"{side} has {len(dups)} duplicated patient label(s): {_names(dups)}; {fix}, each patient once")
    missing = index.difference(other, sort=False)
    extra = other.difference(index, sort=False)
    parts = []
    if len(missing):
        parts.append(f"{what} has no value for {len(missing)} patient(s) of {ref}: {_names(missing)}")
    if len(extra):
        parts.append(f"{what} has {len(extra)} patient(s) not in {ref}: {_names(extra)}")
    return InputDataError("; ".join(parts) + f"; {fix}")


def align_to_index(index: pd.Index, values: T, what: str = "y", ref: str = "X") -> T:
    """Reorder a pandas vector to ``index`` by label; return any other input unchanged.

    Parameters
    ----------
    index : pandas.Index
        Patient labels in the reference order (``X.index`` or the first pandas vector's index).
    values : object
        A Series or DataFrame (aligned by its index) or anything else (returned as given: positional).
    what, ref : str
        Names of the vector and of the reference, used in the error message.

    Returns
    -------
    object
        ``values`` itself when it is not pandas or already in ``index``'s order; otherwise a reordered copy
        whose index equals ``index``.

    Raises
    ------
    InputDataError
        When the label sets differ or either side has duplicated labels.
    """
    if not is_labelled(values):
        return values
    other = values.index
    if other.equals(index):
        return values  # already aligned: the very same object, so results stay bitwise identical
    if index.has_duplicates or other.has_duplicates or len(index) != len(other):
        raise _mismatch(index, other, what, ref)
    positions = other.get_indexer(index)
    if (positions < 0).any():
        raise _mismatch(index, other, what, ref)
    # iloc keeps the dtype (reindex would upcast integer labels if anything were missing; nothing is here)
    return values.iloc[positions]


def align_series(*named: tuple[str, object], index: pd.Index | None = None, ref: str | None = None) -> list[object]:
    """Align every pandas vector among ``named`` to ``index``, or to the first pandas vector's index.

    Parameters
    ----------
    *named : (str, object)
        ``(name, values)`` pairs, e.g. ``("y", y), ("score", score)``; names are used in errors.
    index : pandas.Index, optional
        Reference labels (e.g. ``X.index``). Default: the index of the first pandas vector, so with fewer
        than two pandas vectors nothing changes.
    ref : str, optional
        Name of the reference in errors (default ``"X"`` with ``index``, else the first pandas vector's name).

    Returns
    -------
    list
        The values in the order given; pandas vectors reordered, everything else unchanged.
    """
    if index is None:
        first = next(((name, v) for name, v in named if is_labelled(v)), None)
        if first is None:
            return [v for _, v in named]
        ref, index = first[0], first[1].index
    ref = "X" if ref is None else ref
    return [align_to_index(index, v, name, ref) for name, v in named]


def align_to_frame(X: object, *named: tuple[str, object]) -> list[object]:
    """Align the vectors to ``X.index`` when X is a DataFrame, else among themselves (see :func:`align_series`).

    With a numpy X the rows are positional, but two pandas vectors given together (e.g. ``time`` and
    ``event``) are still paired by patient.
    """
    if isinstance(X, pd.DataFrame):
        return align_series(*named, index=X.index, ref="X")
    return align_series(*named)
