"""The speed benchmarks `s2m bench` runs (one copy of each timing loop)."""
