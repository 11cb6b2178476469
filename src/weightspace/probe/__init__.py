"""Linear probing: frozen features, the probe, evaluation jobs with their content-keyed cache, and
the results files."""
