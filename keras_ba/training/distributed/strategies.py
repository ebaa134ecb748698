"""Multi-device training: tf.distribute on TensorFlow, keras.distribution on JAX.

The modes, their backends and checks: `modes` (one table in
`keras_ba.options.DISTRIBUTE`).

`mirrored` becomes `multi-worker` when `TF_CONFIG` is set. The PyTorch
backend has no Keras-level multi-device API (`keras.distribution` is
JAX-only in Keras 3.15), so multi-GPU PyTorch is torch DDP with a loop of
ours (`ddp`, see `multiprocess` for several processes).

`configure_devices(n)` splits the CPU into n devices for testing on one
machine; it must run before the first TensorFlow op (TF) or the first JAX
computation (JAX), which the `keras-ba` command line guarantees.

BatchNorm: replicas of `MirroredStrategy` normalize with their own part of
the batch (like torch DDP without SyncBatchNorm); `DataParallel` on JAX
compiles one program over the sharded batch, so its statistics are those
of the global batch.

Example:
>>> describe_modes()["ddp"]
'torch DistributedDataParallel, one process per device (PyTorch backend)'
"""

import contextlib
import dataclasses
import json
import os
import re
import sys

import keras

from keras_ba.errors import WorkflowError
from keras_ba.options import DISTRIBUTE_MODES
from keras_ba.training.distributed import modes
from keras_ba.training.distributed.modes import (  # noqa: F401 (their names before 0.3)
    MODES,
    check_multi_worker,
    cluster_size,
    resolve_mode,
)

_XLA_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def describe_modes():
    """One line per `--distribute` mode.

    Example:
    >>> sorted(describe_modes())
    ['data-parallel', 'ddp', 'mirrored', 'multi-worker', 'none']
    """
    return dict(DISTRIBUTE_MODES)


# === Devices ===


def configure_devices(count, backend=None):
    """Splits the host CPU into `count` devices (for tests on one machine).

    TensorFlow: `count` logical CPU devices
    (`tf.config.set_logical_device_configuration`). JAX: sets
    `XLA_FLAGS=--xla_force_host_platform_device_count=count` (plus
    `jax_num_cpu_devices`). Both only work before the backend starts
    computing; afterwards this raises with what to do instead.

    Args:
        count: number of devices (>= 1).
        backend: backend name; default `keras.backend.backend()`.

    Raises:
        WorkflowError: on PyTorch, or when the runtime already started.

    Example:
    >>> configure_devices(0)
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: `devices` must be a positive integer. Received: `devices=0`.
    """
    if not isinstance(count, int) or count < 1:
        raise WorkflowError(f"`devices` must be a positive integer. Received: `devices={count}`.")
    backend = backend or keras.backend.backend()
    if backend == "tensorflow":
        return _configure_tf_devices(count)
    if backend == "jax":
        return _configure_jax_devices(count)
    raise WorkflowError(
        f"`devices` is not supported on the {backend!r} backend: use the tensorflow "
        "backend (`distribute_mode='mirrored'`) or jax (`distribute_mode='data-parallel'`)."
    )


def _configure_tf_devices(count):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:
        raise WorkflowError(
            f"Cannot split the CPU into {count} devices: TensorFlow has already started. "
            "Call configure_devices before any TensorFlow op (keras-ba train does)."
        ) from None


def _configure_jax_devices(count):
    flags = re.sub(rf"{_XLA_DEVICE_FLAG}=\d+", "", os.environ.get("XLA_FLAGS", "")).strip()
    os.environ["XLA_FLAGS"] = f"{flags} {_XLA_DEVICE_FLAG}={count}".strip()
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", count)
    except (AttributeError, RuntimeError, ValueError):
        pass  # older JAX, or already started: the check below decides
    found = len(jax.devices("cpu"))
    if found != count:
        raise WorkflowError(
            f"JAX already runs with {found} CPU devices, not {count}: set "
            f"XLA_FLAGS={_XLA_DEVICE_FLAG}={count} before starting Python."
        )


# === Strategies ===


@dataclasses.dataclass
class Distribution:
    """The chosen multi-device setup.

    Attributes:
        mode: one of `MODES`.
        replicas: number of devices the batch is split over.
        strategy: the `tf.distribute` strategy, or None.

    Example:
    >>> Distribution("none", 1).replicas
    1
    """

    mode: str
    replicas: int
    strategy: object = None

    def scope(self):
        """Where to build and compile the model."""
        if self.strategy is not None:
            return self.strategy.scope()
        return contextlib.nullcontext()

    def close(self):
        """Unsets what `setup_distribution` set process-wide (JAX's global
        `keras.distribution`)."""
        if self.mode == "data-parallel":
            keras.distribution.set_distribution(None)


def setup_distribution(mode, backend=None, processes=1, log=None):
    """Creates the strategy or sets the global Keras distribution for `mode`.

    Call after `configure_devices` and before building the model; build and
    compile inside `Distribution.scope()`.

    Args:
        mode: one of `MODES` (`mirrored` turns into `multi-worker` when
            `TF_CONFIG` is set).
        backend: backend name; default `keras.backend.backend()`.
        processes: the processes of the group (`ddp`: one replica each).
        log: where a warning goes (`mirrored` on one device); default stderr.

    Returns:
        A `Distribution`; call its `close()` when training ends.

    Example:
    >>> setup_distribution("none").replicas
    1
    """
    mode = resolve_mode(mode)
    backend = backend or keras.backend.backend()
    modes.check_backend(mode, backend)
    if mode == "none":
        return Distribution(mode, 1)
    if mode == "ddp":
        return Distribution(mode, processes)  # the processes are the replicas (ddp_loop)
    if mode == "data-parallel":
        # All devices of all processes; every process feeds its own shard of
        # the global batch (data.train_dataset(num_shards=...)), so Keras must
        # not shard the dataset again.
        devices = keras.distribution.list_devices()
        distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
        keras.distribution.set_distribution(distribution)
        return Distribution(mode, len(devices))
    import tensorflow as tf

    if mode == "multi-worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        devices = _mirrored_devices(tf)
        if len(devices) < 2:
            (log or _stderr)(single_device_warning(devices))
        strategy = tf.distribute.MirroredStrategy(devices)
    return Distribution(mode, strategy.num_replicas_in_sync, strategy)


def _stderr(message):
    print(message, file=sys.stderr, flush=True)


def single_device_warning(devices):
    """What `mirrored` on one device says (it trains, on one replica).

    Example:
    >>> single_device_warning(["/job:localhost/replica:0/task:0/device:CPU:0"])[:60]
    'warning: `distribute_mode=mirrored` found one device (/job:l'
    """
    return (
        f"warning: `distribute_mode=mirrored` found one device ({', '.join(devices)}): "
        "training on one replica, as without it. Use a machine with several GPUs, or "
        "`devices=N` to split the CPU (to try the distributed path)."
    )


def _mirrored_devices(tf):
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def worker_index():
    """This worker's index in `TF_CONFIG` (0 without one): only 0 writes files.

    Example:
    >>> worker_index() >= 0
    True
    """
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    return int(config.get("task", {}).get("index", 0))


def check_batch(batch_size, distribution):
    """The global batch must split evenly over the replicas (`modes.check_batch`).

    Example:
    >>> check_batch(6, Distribution("mirrored", 4))
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: `batch_size=6` (the global batch) does not split over 4 replicas: use a multiple of 4.
    """
    modes.check_batch(batch_size, distribution.replicas)
