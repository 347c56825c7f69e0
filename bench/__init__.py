"""Benchmarks of the ckconv layers (see bench/README.md); run ``python -m bench.layers``."""
