"""The `keras-ssd` command line: train, evaluate, predict, anchors, export and demo.

- `main.py`: the parser, the dispatch to a subcommand, one-line errors;
- `args.py`: what the subcommands share (argument types, `--classes`, the
  folder and file checks, `CLIError`, loading a `--model-file`);
- `train.py`, `evaluate.py`, `predict.py`, `anchors.py`, `export.py`,
  `demo.py`: one subcommand each, with `HELP`, `add_arguments(parser)` and `run(args)`.

Every subcommand checks its arguments (folders, files, class lists) before
importing TensorFlow, so a typo fails in a fraction of a second; the modules
import keras-ssd's Keras parts inside `run()` only, so `keras-ssd --help`
never loads TensorFlow. Run it as `keras-ssd` or `python -m keras_ssd`
(both start `main`).
"""

from keras_ssd.cli.args import (
    MODEL_CHOICES,
    VOC_CLASSES,
    CLIError,
    load_ssd_model,
    parse_classes,
)
from keras_ssd.cli.evaluate import format_ap_table
from keras_ssd.cli.main import SUBCOMMANDS, build_parser, main
from keras_ssd.cli.predict import IMAGE_EXTENSIONS, detections_to_json

__all__ = [
    "CLIError",
    "IMAGE_EXTENSIONS",
    "MODEL_CHOICES",
    "SUBCOMMANDS",
    "VOC_CLASSES",
    "build_parser",
    "detections_to_json",
    "format_ap_table",
    "load_ssd_model",
    "main",
    "parse_classes",
]
