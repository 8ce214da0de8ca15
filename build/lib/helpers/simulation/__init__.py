"""Seeded simulated studies with planted ground truth."""
