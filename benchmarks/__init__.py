"""Benchmarks of keras_ga; each script's docstring gives its command."""
