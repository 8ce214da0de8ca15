"""One module per study step (as named in study.yaml): the only code that takes the whole study config and writes outputs."""
