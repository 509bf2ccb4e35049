"""Ctrl-C while `model.fit` reads batches through `SSDSequence` with
multiprocessing data workers (`workers=2, use_multiprocessing=True`).

A terminal's Ctrl-C sends SIGINT to the whole foreground process group, the
data workers included: the test starts the training in its own process group
and signals the group in the middle of an epoch, as a terminal does. The
process must exit within a bounded time (no hang on a worker queue), leave
no worker process behind, and keep the last complete epoch's checkpoint,
from which `resume` continues. The trainer is a separate process (a real
signal, real worker processes); every process is killed in a `finally`.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.timeout(600)

#: Seconds the trainer may take to start and finish its first epoch.
START_TIMEOUT = 240
#: Seconds it may take to exit after Ctrl-C.
EXIT_TIMEOUT = 60

TRAINER = textwrap.dedent('''
    import faulthandler, os, signal, sys, time

    # the test asks for every thread's stack (SIGUSR1) before it kills a hung run
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # a program run from a terminal gets Python's Ctrl-C handler; one started
    # from a background job (a CI script launched with `&`: bash makes such
    # jobs ignore SIGINT, and Python keeps an inherited "ignore") would not,
    # and would train on through the signal; this is the terminal's case
    signal.signal(signal.SIGINT, signal.default_int_handler)

    import keras

    from keras_ssd.data import SSDSequence, VOCDataset, SYNTHETIC_CLASSES
    from keras_ssd.losses import SSDLoss
    from keras_ssd.models import SSDTiny
    from keras_ssd.training.checkpoints import TrainingCheckpoint

    data, folder = sys.argv[1], sys.argv[2]
    keras.utils.set_random_seed(0)
    model = SSDTiny(class_names=list(SYNTHETIC_CLASSES))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=SSDLoss())
    train = VOCDataset(data, "trainval", class_names=SYNTHETIC_CLASSES)
    # a short queue: Keras closes the worker pool once every batch of the
    # epoch is queued, so the workers are alive mid-epoch only while the
    # queue holds back the rest
    seq = SSDSequence(train, model.config, batch_size=1, augment=True, seed=0,
                      workers=2, use_multiprocessing=True, max_queue_size=2)


    class Announce(keras.callbacks.Callback):
        """Says when epoch 2 is under way, then slows the steps down so that
        the signal lands mid-epoch."""

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 1:
                print("MID-EPOCH", flush=True)
            if self.epoch >= 1:
                time.sleep(0.2)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch


    try:
        model.fit(seq, epochs=20, shuffle=False, verbose=0,
                  callbacks=[Announce(), TrainingCheckpoint(folder, verbose=0)])
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
        sys.exit(130)
    print("FINISHED", flush=True)
''')


def _children(pid):
    """Process ids whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _ignores_sigint(pid):
    with open(f"/proc/{pid}/status") as f:
        mask = next(line.split()[1] for line in f if line.startswith("SigIgn:"))
    return bool(int(mask, 16) >> (signal.SIGINT - 1) & 1)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_with_multiprocessing_workers_exits_leaves_no_worker_and_keeps_the_epoch(
        synthetic_voc, tmp_path):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    folder = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1",
               TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, str(script), synthetic_voc, str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    workers = []
    try:
        deadline = time.monotonic() + START_TIMEOUT
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.strip() == "MID-EPOCH":
                break
        assert lines and lines[-1].strip() == "MID-EPOCH", (
            f"the trainer did not reach epoch 2: {lines} {proc.stderr.read()[-3000:]}")
        workers = _children(proc.pid)
        assert workers, "no data worker process found"
        # the workers leave Ctrl-C to the trainer (keras_ssd.data.sequence)
        assert all(_ignores_sigint(pid) for pid in workers)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        started = time.monotonic()
        try:
            out, err = proc.communicate(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(2)
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"no exit {EXIT_TIMEOUT} s after Ctrl-C; its threads:\n"
                        f"{err[-6000:]}")
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130, (proc.returncode, out, err[-3000:])
    assert "INTERRUPTED" in out and "FINISHED" not in out
    time.sleep(1)  # the workers' exit may trail the parent's by a moment
    assert [pid for pid in workers if _alive(pid)] == []
    state = json.loads((folder / "state.json").read_text())
    assert state["epoch"] == 1 and state.get("pending") is None
    print(f"Ctrl-C: exit after {took:.1f} s, {len(workers)} worker processes gone")

    from keras_ssd.training.checkpoints import resume

    model, initial_epoch = resume(str(folder))
    assert initial_epoch == 1 and model.optimizer is not None
