"""The cohort's tables: manifest, patient table, acquisition headers, datasets and CSV dialects."""
