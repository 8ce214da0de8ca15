"""Every figure of the study, in one style; the only package that imports matplotlib.

Modules by topic: :mod:`~helpers.figures.style` (palette, style, :func:`~helpers.figures.style.save_figure`),
:mod:`~helpers.figures.images` (contour montages, habitat maps), :mod:`~helpers.figures.deep` (deep-classifier
loss curves, Grad-CAM, super-resolution), :mod:`~helpers.figures.harmonization` (ComBat diagnostics),
:mod:`~helpers.figures.selection` (LASSO path and CV, Rad-score coefficients), :mod:`~helpers.figures.models`
(AUC heatmap of the model grid), :mod:`~helpers.figures.shap` (SHAP beeswarm, bar, waterfall),
:mod:`~helpers.figures.nomogram`, :mod:`~helpers.figures.survival` (Kaplan-Meier) and
:mod:`~helpers.figures.evaluation` (ROC, calibration, decision curves, forest plots, ...). Figures are built
from already computed results of the stage packages and returned; the report writer saves them.
"""
