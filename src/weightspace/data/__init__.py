"""Datasets: the packaged registry and the preparation of a dataset into train, validation, probe
and test splits."""
