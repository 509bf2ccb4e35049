"""Messages printed at the end of an epoch on their own line.

Keras' progress bar (`verbose=1`) leaves its line open after the last
batch and closes it only after every callback's `on_epoch_end` has run, so
a callback that prints there (`val_mAP = ...`, `saved latest.keras`) ran
into the bar's line (`loss: 17.7364Epoch 1: val_mAP = 0.0000`).
`ProgressLineBreak`, first in the callback list, records that a bar line
is open; `print_line` ends it before the first message.
"""

import keras

_open = {"line": False}


def print_line(text):
    """Print `text` on a line of its own, ending an open progress-bar line first."""
    if _open["line"]:
        print()
        _open["line"] = False
    print(text)


class ProgressLineBreak(keras.callbacks.Callback):
    """Record whether Keras' progress bar has a line open (see module docstring).

    Args:
        verbose: the `verbose` of `fit` (only 1 draws a bar line per batch).
        **kwargs: passed to `keras.callbacks.Callback`.
    """

    def __init__(self, verbose=1, **kwargs):
        super().__init__(**kwargs)
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        _open["line"] = False

    def on_train_batch_end(self, batch, logs=None):
        _open["line"] = self.verbose == 1

    def on_train_end(self, logs=None):
        _open["line"] = False
