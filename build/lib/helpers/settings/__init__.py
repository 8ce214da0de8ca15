"""Every settings model of the study, validated from YAML into frozen objects.

Imports nothing of the project but :mod:`helpers.errors` (no torch, matplotlib or image code), so loading a study
config is fast everywhere (notebooks, ``validate``, the runner). One settings module per stage: ``study`` (the study
config and its sections), ``preprocessing``, ``segmentation``, ``deep_features``, ``super_resolution``,
``simulation``; ``_base`` holds the one strict base class.
"""

from helpers.settings.study import GeometryTolerance, StudyConfig, load_config

__all__ = ["GeometryTolerance", "StudyConfig", "load_config"]
