"""Benchmarks of Leadflow (run them as modules, e.g. ``python -m bench.embedded``)."""
