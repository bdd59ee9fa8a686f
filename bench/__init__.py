"""clara-fastio benchmarks (issue 5): `python -m bench [--quick] [--json FILE] [--only IDS]`."""
