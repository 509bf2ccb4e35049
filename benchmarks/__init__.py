"""keras-ssd benchmark suite: `python benchmarks/run.py [--quick] [--json OUT]`."""
