"""Benchmarks of nonstop against its baselines, run with ``python -m bench``."""
