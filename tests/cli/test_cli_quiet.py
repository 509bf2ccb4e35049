"""Quiet start-up and readable epoch output."""

import os
import subprocess
import sys


def test_tensorflow_start_up_noise_is_hidden(synthetic_voc, tmp_path):
    # a command that loads TensorFlow, then fails on the model file: the one
    # error line must be all of stderr (no absl / CUDA / CPU-feature lines)
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"not a zip")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-m", "keras_ssd", "evaluate", "--data",
                           synthetic_voc, "--model-file", str(bad)],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1
    assert lines == [f"keras-ssd evaluate: error: --model-file {bad} is not a keras-ssd "
                     "model (not a .keras archive)"], proc.stderr


def test_epoch_messages_start_on_their_own_line(capsys):
    from keras_ssd.training.lines import ProgressLineBreak, print_line

    marker = ProgressLineBreak(verbose=1)
    marker.on_epoch_begin(0)
    print("1/2 - loss: 1.0", end="")  # Keras' bar leaves its line open
    marker.on_train_batch_end(1)
    print_line("Epoch 1: val_mAP = 0.5")
    print_line("Epoch 1: saved latest.keras")
    assert capsys.readouterr().out == ("1/2 - loss: 1.0\nEpoch 1: val_mAP = 0.5\n"
                                       "Epoch 1: saved latest.keras\n")
    quiet = ProgressLineBreak(verbose=2)  # one line per epoch: nothing left open
    quiet.on_epoch_begin(1)
    quiet.on_train_batch_end(1)
    print_line("Epoch 2: val_mAP = 0.6")
    assert capsys.readouterr().out == "Epoch 2: val_mAP = 0.6\n"
