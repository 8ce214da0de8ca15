"""The one strict base of every settings model: unknown keys are errors, values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo in a config key must not be silently ignored); frozen, so settings can be
    hashed and recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
