"""Speed measurements shared by `s2m bench` and the scripts in benchmarks/ (one copy of each timing loop)."""
