"""Every settings model of the study, validated from YAML; imports no torch, matplotlib or image code."""
