"""helpers: the tested package behind the study notebooks.

Modules by stage: ``config`` (study YAML), ``io`` (images, DICOM, RTSTRUCT),
``headers`` (acquisition parameters), ``manifest`` (cohort manifest and
validation), ``datasets`` (the embedded STS cohort), ``qc`` (acquisition and
image/mask QC), ``figures``, ``report`` (tables/figures under ``reports/``),
``provenance`` and ``pipeline`` (the papermill runner).
"""

__version__ = "0.1.0"
