"""helpers: the tested package behind the study notebooks, one subpackage per stage.

The folder tree is the architecture; dependencies point one way (enforced by ``tests/test_architecture.py``):

- ``settings``: every settings model, validated from YAML (imports nothing of the project but ``errors``);
- ``data``: the manifest, patient table, acquisition headers, CSV dialects, the column and model-name grammar
  (``columns``) and every file handed from one step to the next (``artifacts``);
- ``imaging``: reading images and masks (one geometry policy), preprocessing, ROIs, habitats, image QC;
  ``imaging.deep``: segmentation, 2.5D deep features, super-resolution, nnU-Net bridge;
- ``features``: the pyradiomics wrapper and presets, the extraction engine and cache, IBSI compliance;
- ``learning``: estimators fitted on training data only (stability filter, ComBat, selection, clinical models,
  model grid and tuning, survival models, nomogram, SHAP);
- ``stats``: pure statistics pinned to reference implementations;
- ``figures``: every figure, one style (the only package importing matplotlib);
- ``reporting``: the report writer and the supplementary document;
- ``steps``: one module per study step, the only code that takes the whole study config and writes outputs;
- ``runner``: the papermill runner, provenance and the command line; ``simulation``: simulated studies.

``errors`` holds every exception; ``_alignment`` and ``_environment`` are small shared internals.
"""

__version__ = "0.1.0"
