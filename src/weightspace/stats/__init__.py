"""Statistics shared by every claim: tests at the unit of replication, intervals, Holm per family,
verdicts."""
