"""Data-parallel training on several devices or machines.

One vocabulary for both backends:

- `"none"`: one device (TensorFlow's default strategy; `None` under JAX).
- `"mirrored"`: `tf.distribute.MirroredStrategy` / `keras.distribution.DataParallel`
  over the local devices.
- `"multi-worker"`: `tf.distribute.MultiWorkerMirroredStrategy` from `TF_CONFIG`
  / `keras.distribution.initialize()` then `DataParallel`.

Build, compile **and** fit inside `strategy_scope(strategy)`. The batch size
you give `fit` / `SSDSequence` is the **global** batch: each of the `R`
replicas gets `batch_size / R` images per step (`check_global_batch_size`
insists that it divides).

Why the result equals single-device training on the global batch:

- `SSDLoss` divides by the number of positives of the **global** batch:
  under a `tf.distribute` strategy each replica only sees its share, so the
  loss sums its per-replica count across replicas (`cross_replica_sum`); its
  `"sum"` reduction is not rescaled by Keras, and the per-replica gradients
  of `share_r / N_pos_global` are summed by the optimizer, which is exactly
  the gradient of the global loss. Under JAX, `DataParallel` compiles one
  program over the global (sharded) batch, so every sum is already global.
- Weight decay: Keras divides regularisation losses by `R` under
  `tf.distribute`, so the summed gradient counts it once.
- Batch normalisation: `prepare_model` switches Keras' synchronised batch
  statistics on under a multi-replica TensorFlow strategy (JAX computes
  global statistics by construction). The saved model config keeps
  `synchronized=False`, so checkpoints load under any backend.

Example:

>>> from keras_ssd.training import distribute
>>> strategy = distribute.get_strategy("mirrored")
>>> with distribute.strategy_scope(strategy):
...     model = SSDTiny(num_classes=20)
...     distribute.prepare_model(model, strategy)
...     model.compile(optimizer="sgd", loss=SSDLoss())
...     model.fit(sequence, epochs=10)   # sequence batch = the global batch
"""

import contextlib
import json
import os

import keras

from keras_ssd.losses import cross_replica_sum  # noqa: F401  (re-exported)
from keras_ssd.models.walk import iter_layers

__all__ = [
    "STRATEGIES",
    "get_strategy",
    "strategy_scope",
    "num_replicas",
    "check_global_batch_size",
    "prepare_model",
    "build_and_compile",
    "distributed_training",
    "cross_replica_sum",
    "parse_tf_config",
    "patch_keras_multi_worker",
    "is_chief",
    "process_share",
]

#: Accepted strategy names (the `keras-ssd train --distribute` choices).
STRATEGIES = ("none", "mirrored", "multi-worker")


def _backend():
    return keras.backend.backend()


def _normalize_name(name):
    key = "none" if name is None else str(name).strip().lower().replace("_", "-")
    if key == "multiworker":
        key = "multi-worker"
    if key not in STRATEGIES:
        raise ValueError(
            f"distribute strategy must be one of {', '.join(STRATEGIES)}, got {name!r}"
        )
    return key


def parse_tf_config(environ=None):
    """The `TF_CONFIG` cluster description, checked.

    Args:
        environ: mapping to read `TF_CONFIG` from (default `os.environ`).

    Returns:
        `None` when `TF_CONFIG` is unset or empty, else a dict with
        `"workers"` (list of `"host:port"`), `"task_type"` and
        `"task_index"` (int) and `"address"` (this task's `"host:port"`).
        Workers are listed chief first.

    Raises:
        ValueError: `TF_CONFIG` is not JSON, has no `cluster.worker` list, or
            its `task` does not name a worker/chief in the cluster.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e.msg} at char {e.pos})") from None
    if not isinstance(spec, dict):
        raise ValueError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    cluster = spec.get("cluster")
    if not isinstance(cluster, dict):
        raise ValueError("TF_CONFIG has no 'cluster' object, e.g. "
                         '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                         '"task": {"type": "worker", "index": 0}}')
    workers = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
    if not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise ValueError("TF_CONFIG cluster must list its workers as 'host:port' strings "
                         f"under 'worker' (and optionally 'chief'), got {cluster!r}")
    task = spec.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError("TF_CONFIG needs a 'task' object like "
                         '{"type": "worker", "index": 0}, got ' + repr(task))
    task_type = task["type"]
    index = task["index"]
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"TF_CONFIG task index must be an int, got {index!r}")
    members = cluster.get(task_type)
    if task_type not in ("chief", "worker") or not isinstance(members, list):
        raise ValueError(f"TF_CONFIG task type {task_type!r} is not 'chief' or 'worker' "
                         "listed in the cluster")
    if not 0 <= index < len(members):
        raise ValueError(f"TF_CONFIG task index {index} is out of range for the "
                         f"{len(members)} {task_type}(s) in the cluster")
    return {"workers": workers, "task_type": task_type, "task_index": index,
            "address": members[index]}


def _tf_strategy(name, devices):
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if devices is None and not tf.config.list_logical_devices("GPU"):
            cpus = tf.config.list_logical_devices("CPU")
            if len(cpus) > 1:  # e.g. a CPU split into logical devices
                devices = [d.name for d in cpus]
        return tf.distribute.MirroredStrategy(devices=devices)
    if devices is not None:
        raise ValueError("get_strategy: devices cannot be set for 'multi-worker' "
                         "(each worker uses its local GPUs, or its CPU)")
    parse_tf_config()  # clear error for a malformed TF_CONFIG before TF reads it
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    patch_keras_multi_worker()
    return strategy


_PATCHED = False


def _is_multi_worker(strategy):
    import tensorflow as tf

    extended = getattr(strategy, "extended", None)
    in_multi_worker = getattr(extended, "_in_multi_worker_mode", None)
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and callable(in_multi_worker) and bool(in_multi_worker()))


def patch_keras_multi_worker():
    """Make Keras 3's TensorFlow trainer work under a multi-worker strategy.

    Keras 3 (up to at least 3.15 with TensorFlow 2.21) cannot `fit` under
    `tf.distribute.MultiWorkerMirroredStrategy` with more than one worker
    (keras-team/keras#20585, tensorflow/tensorflow#72388), for two reasons
    this function repairs:

    1. Before the first step `fit`/`evaluate` build the model from one
       batch and average it over the replicas with
       `strategy.reduce("MEAN", (images, targets), axis=None)`. With
       several workers that sends the whole tuple to the collective ops,
       which cannot convert it: *Attempt to convert a value
       (PerReplica:{...}) with an unsupported type*. Only the shapes
       matter there, so the patched build uses this worker's first
       replica's batch (no communication).
    2. Every step then reduces the step's outputs (the loss and metric
       values, scalars) with `strategy.reduce("MEAN", v, axis=0)`, which
       fails on a scalar (*Invalid reduction dimension 0 for input with 0
       dimensions*). The patched reduction averages scalars across the
       replicas (`axis=None`); the metric values are already synchronised
       variables, so this is the same number on every worker.

    Under any other strategy (one device, `MirroredStrategy`, one worker)
    the original Keras code runs unchanged. The patch is applied once, by
    `get_strategy("multi-worker")` under TensorFlow; it does nothing if
    this Keras version lacks the functions it wraps.

    Returns:
        True when the patch is (now) in place.
    """
    global _PATCHED
    if _PATCHED:
        return True
    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer
    except ImportError:
        return False
    original_reduce = getattr(tf_trainer, "reduce_per_replica", None)
    trainer_class = getattr(tf_trainer, "TensorFlowTrainer", None)
    original_build = getattr(trainer_class, "_maybe_symbolic_build", None)
    if original_reduce is None or original_build is None:
        return False
    import tensorflow as tf

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not _is_multi_worker(strategy):
            return original_reduce(values, strategy, reduction)

        def reduce_one(value):
            first = (strategy.experimental_local_results(value)[0]
                     if isinstance(value, tf.distribute.DistributedValues) else value)
            rank = getattr(getattr(first, "shape", None), "rank", None)
            return strategy.reduce("MEAN", value, axis=0 if rank else None)

        return keras.tree.map_structure(reduce_one, values)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is None or data_batch is not None or not _is_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            batch = next(batches)
            data_batch = keras.tree.map_structure(
                lambda v: (strategy.experimental_local_results(v)[0]
                           if isinstance(v, tf.distribute.DistributedValues) else v),
                batch)
            break
        return original_build(self, iterator=None, data_batch=data_batch)

    tf_trainer.reduce_per_replica = reduce_per_replica
    trainer_class._maybe_symbolic_build = _maybe_symbolic_build
    _PATCHED = True
    return True


def _jax_initialize_from_tf_config():
    """`keras.distribution.initialize` from `TF_CONFIG` or the
    `KERAS_DISTRIBUTION_*` variables."""
    if os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
        keras.distribution.initialize()
        return
    cluster = parse_tf_config()
    if cluster is None:
        raise ValueError(
            "multi-worker under JAX needs TF_CONFIG (the same cluster description as "
            "TensorFlow) or KERAS_DISTRIBUTION_JOB_ADDRESSES, "
            "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID"
        )
    process_id = cluster["workers"].index(cluster["address"])
    keras.distribution.initialize(
        job_addresses=",".join(cluster["workers"]),
        num_processes=len(cluster["workers"]),
        process_id=process_id,
    )


def get_strategy(name="none", devices=None):
    """The distribution object for `name` on the active Keras backend.

    Args:
        name: `"none"`, `"mirrored"` (all local GPUs; on a machine without
            GPUs, all logical CPU devices) or `"multi-worker"` (the machines
            described by `TF_CONFIG`; see `docs/distributed.md`).
        devices: optional device list for `"mirrored"` (TensorFlow device
            names such as `"/gpu:0"`, or JAX devices / `"cpu:0"` style
            names for `keras.distribution.DataParallel`).

    Returns:
        TensorFlow: a `tf.distribute.Strategy` (`"none"`: the default
        strategy). JAX: a `keras.distribution.DataParallel`, or `None` for
        `"none"`. Either way, pass it to `strategy_scope`.

    Raises:
        ValueError: unknown name, malformed `TF_CONFIG`, or a backend
            without a data-parallel implementation here (PyTorch, NumPy).
    """
    name = _normalize_name(name)
    backend = _backend()
    if backend == "tensorflow":
        return _tf_strategy(name, devices)
    if backend == "jax":
        if name == "none":
            return None
        if name == "multi-worker":
            if devices is not None:
                raise ValueError("get_strategy: devices cannot be set for 'multi-worker'")
            _jax_initialize_from_tf_config()
            distribution = keras.distribution.DataParallel()
            # Keras shards only tf.data input itself; every process builds the
            # same global batches and keeps its share (`process_share`).
            distribution.auto_shard_dataset = False
            return distribution
        return keras.distribution.DataParallel(devices=devices)
    if name == "none":
        return None
    raise ValueError(
        f"distributed training ({name!r}) is implemented for the TensorFlow and JAX "
        f"backends, not {backend!r}"
    )


def is_chief(strategy=None):
    """Whether this process writes the run's files (checkpoints, logs).

    Under `tf.distribute.MultiWorkerMirroredStrategy` with several workers
    only the chief does: the task of type `"chief"`, or worker 0 when the
    cluster has no chief (TensorFlow's own rule, `strategy.extended.
    should_checkpoint`). Under JAX multi-process training, process 0. Any
    single-process run is its own chief.

    Args:
        strategy: from `get_strategy` (`None`: one device).

    Returns:
        bool.
    """
    if strategy is None:
        if _backend() == "jax":
            import jax

            return jax.process_index() == 0
        return True
    extended = getattr(strategy, "extended", None)
    if extended is not None:  # a tf.distribute strategy
        return bool(getattr(extended, "should_checkpoint", True))
    if _backend() == "jax":
        import jax

        return jax.process_index() == 0
    return True


class _ProcessShare(keras.utils.PyDataset):
    """This process's rows of every batch of a `PyDataset` of global batches."""

    def __init__(self, sequence, index, count):
        super().__init__(
            workers=getattr(sequence, "workers", 1),
            use_multiprocessing=getattr(sequence, "use_multiprocessing", False),
            max_queue_size=getattr(sequence, "max_queue_size", 10))
        self.sequence, self.index, self.count = sequence, int(index), int(count)

    def __len__(self):
        return len(self.sequence)

    @property
    def num_batches(self):
        return len(self.sequence)

    def __getitem__(self, i):
        batch = self.sequence[i]
        size = len(keras.tree.flatten(batch)[0])
        if size % self.count:
            raise ValueError(
                f"a batch of {size} cannot be split over {self.count} processes")
        share = size // self.count
        rows = slice(self.index * share, (self.index + 1) * share)
        return keras.tree.map_structure(lambda a: a[rows], batch)

    def on_epoch_end(self):
        self.sequence.on_epoch_end()

    def set_epoch(self, epoch):
        self.sequence.set_epoch(epoch)


def process_share(sequence):
    """`sequence` as this process should feed it to `fit`.

    Under JAX with several processes (`get_strategy("multi-worker")`),
    Keras assembles the global batch from every process's local rows, in
    process order, and does not shard a `PyDataset` itself. Every process
    builds the same global batches (same data, same seed), so process `p`
    of `P` keeps rows `p * B/P` to `(p + 1) * B/P` of each: the global step
    is the single-process step. Anywhere else the sequence is returned as
    it is (TensorFlow's multi-worker strategy shards its input itself).
    """
    if _backend() != "jax":
        return sequence
    import jax

    distribution = keras.distribution.distribution()
    count = jax.process_count()
    if count == 1 or distribution is None:
        return sequence
    if getattr(distribution, "auto_shard_dataset", True):
        return sequence
    return _ProcessShare(sequence, jax.process_index(), count)


def strategy_scope(strategy):
    """Context manager under which to build, compile and fit.

    `strategy.scope()` for a `tf.distribute.Strategy` or a
    `keras.distribution.Distribution`; a no-op for `None`.
    """
    if strategy is None:
        return contextlib.nullcontext()
    return strategy.scope()


def num_replicas(strategy):
    """Number of model replicas (devices) a step is split across."""
    if strategy is None:
        return 1
    count = getattr(strategy, "num_replicas_in_sync", None)
    if count is None:
        count = getattr(strategy, "num_model_replicas", None)
    if count is None:
        count = int(strategy.device_mesh.devices.size)
    return int(count)


def check_global_batch_size(batch_size, strategy):
    """Per-replica batch size for a global `batch_size`.

    Raises:
        ValueError: `batch_size` is not a positive multiple of the number of
            replicas (an uneven split would leave devices idle under
            TensorFlow and cannot be sharded under JAX).
    """
    replicas = num_replicas(strategy)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be a positive int, got {batch_size!r}")
    if batch_size % replicas:
        raise ValueError(
            f"the global batch size {batch_size} is not divisible by the {replicas} "
            f"replicas; use a multiple of {replicas} "
            f"(e.g. {replicas * max(1, batch_size // replicas)})"
        )
    return batch_size // replicas


def _portable_batchnorm_config(layer):
    """Report `synchronized=False` in the layer config: synchronisation is a
    property of the training run, and `synchronized=True` would not load
    under JAX or PyTorch."""
    class_get_config = type(layer).get_config

    def get_config():
        config = class_get_config(layer)
        config["synchronized"] = False
        return config

    object.__setattr__(layer, "get_config", get_config)


def prepare_model(model, strategy, sync_batchnorm=True):
    """Make a model built in `strategy_scope(strategy)` train like one device.

    Under a TensorFlow strategy with several replicas and
    `sync_batchnorm=True`, every `BatchNormalization` layer computes its
    batch statistics over the global batch (Keras' `synchronized` mode, one
    all-reduce per layer), as one device would. Under JAX `DataParallel`
    they already are global, and with one replica nothing changes.

    Args:
        model: a Keras model created inside `strategy_scope(strategy)`.
        strategy: from `get_strategy`.
        sync_batchnorm: bool; `False` keeps per-replica statistics (less
            communication; results then depend on the number of replicas).

    Returns:
        The model.
    """
    if not isinstance(sync_batchnorm, bool):
        raise ValueError(f"sync_batchnorm must be True or False, got {sync_batchnorm!r}")
    if _backend() != "tensorflow" or num_replicas(strategy) == 1 or not sync_batchnorm:
        return model
    for layer in iter_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            _portable_batchnorm_config(layer)
    return model


def build_and_compile(build_fn, strategy=None, optimizer="sgd", loss=None,
                      sync_batchnorm=True, jit_compile=None, **compile_kwargs):
    """Build and compile a model for data-parallel training.

    Calls `build_fn()` inside `strategy_scope(strategy)`, applies
    `prepare_model`, and compiles there with `SSDLoss()` (unless `loss` is
    given) and the runtime's `jit_compile` default. `optimizer` may be a
    zero-argument callable so its variables are created under the scope.
    Fit the result inside `strategy_scope(strategy)` too (required under
    JAX).

    Args:
        build_fn: zero-argument callable returning the model (e.g.
            `lambda: SSDTiny(num_classes=3)`).
        strategy: from `get_strategy` (`None`: one device).
        optimizer: optimizer, its name, or a callable creating it.
        loss: default `keras_ssd.losses.SSDLoss()`.
        sync_batchnorm: see `prepare_model`.
        jit_compile: `None` for `keras_ssd.accel.runtime.default_jit_compile()`.
        **compile_kwargs: other `model.compile` arguments.

    Returns:
        The compiled model.
    """
    from keras_ssd.losses import SSDLoss
    from keras_ssd.accel.runtime import compile_defaults

    if not callable(build_fn):
        raise ValueError(f"build_fn must be a callable returning a model, got {build_fn!r}")
    with strategy_scope(strategy):
        model = build_fn()
        if not isinstance(model, keras.Model):
            raise ValueError(f"build_fn must return a keras.Model, got {type(model).__name__}")
        prepare_model(model, strategy, sync_batchnorm=sync_batchnorm)
        if callable(optimizer) and not isinstance(optimizer, keras.optimizers.Optimizer):
            optimizer = optimizer()
        model.compile(**compile_defaults(
            jit_compile, optimizer=optimizer,
            loss=SSDLoss() if loss is None else loss, **compile_kwargs,
        ))
    return model


@contextlib.contextmanager
def distributed_training(name="none", batch_size=None, devices=None):
    """Context for a whole training run: strategy, batch check and scope.

    Creates the strategy (`get_strategy(name, devices)`), checks that the
    global `batch_size` splits evenly over its replicas, and enters its
    scope. Build or load the model, call `prepare_model(model, strategy)`,
    compile and fit inside. This is what `keras-ssd train --distribute`
    does.

    Yields:
        The strategy (see `get_strategy`).

    Example:

    >>> with distributed_training("mirrored", batch_size=32) as strategy:
    ...     model = prepare_model(SSD300(num_classes=20), strategy)
    ...     train_detector(model, dataset, epochs=120, batch_size=32)
    """
    strategy = get_strategy(name, devices=devices)
    if batch_size is not None:
        check_global_batch_size(batch_size, strategy)
    with strategy_scope(strategy):
        yield strategy
