import sys

from keras_ssd.cli import main

sys.exit(main())
