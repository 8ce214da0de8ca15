"""Writing outputs under reports/<study>/ and assembling the supplementary document."""
