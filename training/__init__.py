"""Turning a config into runs: checks, builders, callbacks and ``train(cfg)``."""
