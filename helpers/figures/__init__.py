"""Every figure of the study, in one style; the only package that imports matplotlib."""
