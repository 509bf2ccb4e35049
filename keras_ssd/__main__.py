"""`python -m keras_ssd`: the `keras-ssd` command line."""

import sys

from keras_ssd.cli import main

sys.exit(main())
