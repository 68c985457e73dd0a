"""dripd's benchmarks: `python -m bench NAME` (or `./dev bench NAME`)."""
