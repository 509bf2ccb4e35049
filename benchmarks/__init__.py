"""keras-ssd benchmark suite: `python -m benchmarks.run [--quick] [--out DIR]`
from the repository root (results go to `~/.cache/keras_ssd/benchmarks/`)."""
