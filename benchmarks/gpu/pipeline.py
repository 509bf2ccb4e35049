"""The worker side of the GPU benchmark's data-pipeline section.

Each worker process builds its own `SSDSequence` over the benchmark's VOC
folder (`init`) and hands whole training batches back to the main process
(`batch`), which is what Keras' multiprocessing loader does with a
`PyDataset`. This module imports nothing heavy at the top: a worker is
started with the "spawn" method (the main process holds a CUDA context that
must not be forked), and it pins JAX to the CPU before keras-ssd (and so
Keras and JAX) is imported, so that no worker touches the GPU.
"""

import os

_SEQUENCE = None


def init(root, class_names, config, batch_size, seed):
    """Worker initializer: build the worker's `SSDSequence` (full SSD
    augmentation and target encoding, as in training)."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from keras_ssd.data import SSDSequence, VOCDataset

    global _SEQUENCE
    dataset = VOCDataset(root, "trainval", class_names=tuple(class_names))
    _SEQUENCE = SSDSequence(dataset, config, batch_size=batch_size, augment=True,
                            seed=seed)


def batch(index):
    """Training batch `index` of an endless run over the epochs: `(images,
    targets)` as numpy arrays, shipped back to the main process."""
    epochs = len(_SEQUENCE)
    _SEQUENCE.set_epoch(index // epochs)
    return _SEQUENCE[index % epochs]


def batch_shape(index):
    """Build batch `index` as `batch` does and return only its images' shape
    (what the workers make, without the cost of shipping it back)."""
    images, _ = batch(index)
    return images.shape


def ready(_):
    """A no-op task: returns once the worker is initialised."""
    return os.getpid()
