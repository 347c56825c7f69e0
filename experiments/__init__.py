"""Paper experiment runner and results summary (see experiments/README.md)."""
