"""Evaluations beyond the run's own test: the same model at other resolutions."""
