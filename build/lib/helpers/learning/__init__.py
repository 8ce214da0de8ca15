"""Estimators fitted on training data only: stability filter, harmonisation, selection, models, survival, nomogram, explanations."""
