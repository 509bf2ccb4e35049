"""Entry point of the `keras-ssd` console script.

It asks `keras_ssd` to import its Keras-dependent parts lazily, so that
`keras-ssd --help` and argument errors need not load TensorFlow.
"""

import os
import sys


def main():
    os.environ.setdefault("KERAS_SSD_LAZY_IMPORTS", "1")
    from keras_ssd.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
