"""The papermill runner, provenance records and the command line."""
