"""Radiomics features: the pyradiomics wrapper, presets, the extraction engine and its cache, IBSI compliance."""
