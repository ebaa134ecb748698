"""Several processes training one model: the process group, data shards, who writes.

`keras-ba train` runs on several processes (several machines, or one process
per GPU) with the backend's own distributed engine:

| `--distribute` | backend | engine |
| --- | --- | --- |
| `data-parallel` | jax | `jax.distributed.initialize` + `keras.distribution.DataParallel` over the global device mesh (one `fit`, XLA collectives) |
| `ddp` | torch | `torch.distributed` (gloo on CPU, nccl on GPU) + `DistributedDataParallel` in `ddp_loop.fit` |

Every process runs the same command; they differ only in the process id.
Where the process count, id and coordinator come from (flags, `KERAS_BA_*`,
Keras' variables, torchrun or SLURM): `process_group`, their one owner.

Data: every process builds the same seeded, shuffled stream of images and
keeps every N-th one (`tf.data.Dataset.shard` after the shuffle, before
batching), in batches of `batch_size / N`: at every step the N local batches
together are exactly the images of the one-process global batch.
Augmentation runs on the local batch, seeded per process.

Files: only process 0 writes (run folder, checkpoints, history, TensorBoard,
plots, the final `.keras`). The others read the same backup when a run
resumes, so the run folder must be on storage that every machine sees (as
for JAX's and PyTorch's own checkpointing); `check_same_start` stops with a clear
error when the processes would start from different epochs or weights.

Failures: `--distributed-timeout` (default 300 s) bounds the wait for the
processes to join, JAX's heartbeat and torch's collectives. A process that
loses another one prints what happened and exits with status 1 (JAX would
abort the process anyway); rerunning every process with the same command
resumes from the last finished epoch.

Example:
>>> group = resolve_process_group("data-parallel", num_processes=2, process_id=1,
...                               coordinator="10.0.0.1:1234", environ={})
>>> group.num_processes, group.process_id, group.is_chief
(2, 1, False)
"""

import contextlib
import os
import re
import socket
import sys
import threading
import time

import keras

from keras_ba.errors import WorkflowError
from keras_ba.training.distributed.process_group import (  # noqa: F401 (re-exported)
    AUGMENT_SEED_STRIDE,
    DEFAULT_TIMEOUT,
    ENV,
    ProcessGroup,
    check_batch,
    check_mode,
    first_slurm_host,
    resolve_process_group,
)

# === Forming the group ===


def _probe(address, seconds=1.0):
    """'nothing listens at ...' or 'reachable' for a HOST:PORT."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            return "it accepts connections"
    except OSError as error:
        return f"nothing accepts connections there ({error.strerror or error})"


def _check_port_free(address):
    """Process 0 serves the rendezvous: its port must be free on this machine."""
    port = int(address.rpartition(":")[2])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError as error:
            raise WorkflowError(
                f"Process 0 serves the coordinator on port {port}, but it is taken on this "
                f"machine ({error.strerror or error}): pick another `coordinator` port."
            ) from None


def _join_failure_message(group):
    if group.is_chief:
        return (
            f"Process 0 of {group.num_processes}: not every process joined at "
            f"{group.coordinator} within {group.timeout:g} s. Start all "
            f"{group.num_processes} processes with the same `num_processes` and `coordinator` "
            "(or raise `distributed_timeout`)."
        )
    return (
        f"Process {group.process_id} of {group.num_processes}: could not join process 0 at "
        f"{group.coordinator} within {group.timeout:g} s; {_probe(group.coordinator)}. Is "
        "process 0 running, and is that address reachable from this machine?"
    )


def _exit_with(message):
    """Prints a one-line error and ends the process (JAX aborts it otherwise)."""
    print(f"keras-ba train: error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def initialize(group, backend=None):
    """Forms the process group: `jax.distributed` or `torch.distributed`.

    JAX: must run before any JAX computation. A watchdog ends the process
    with a clear message when the group does not form within
    `group.timeout` (JAX itself would abort with a C++ log); collectives then
    fail within the heartbeat timeout (also `group.timeout`) when a process
    dies. PyTorch: `init_process_group` with gloo (CPU) or nccl (CUDA, on
    the GPU `local_rank`), `timeout=group.timeout` for the rendezvous and
    for every collective.

    Args:
        group: a `ProcessGroup` with `is_multi`.
        backend: `"jax"` or `"torch"`; default `keras.backend.backend()`.

    Raises:
        WorkflowError: port taken, group not formed in time (PyTorch).

    Example:
        initialize(resolve_process_group("ddp"))  # under torchrun
    """
    backend = backend or keras.backend.backend()
    if group.is_chief and group.launcher != "torchrun":  # torchrun serves its own port
        _check_port_free(group.coordinator)
    if backend == "jax":
        return _initialize_jax(group)
    if backend == "torch":
        return _initialize_torch(group)
    raise WorkflowError(f"Several processes are not supported on the {backend!r} backend.")


def _initialize_jax(group):
    import jax

    done = threading.Event()

    def watchdog():
        if not done.wait(group.timeout):
            _exit_with(_join_failure_message(group))

    threading.Thread(target=watchdog, daemon=True, name="keras-ba-join-watchdog").start()
    seconds = max(1, int(group.timeout))
    try:
        jax.distributed.initialize(
            coordinator_address=group.coordinator,
            num_processes=group.num_processes,
            process_id=group.process_id,
            initialization_timeout=seconds + 30,  # the watchdog speaks first
            heartbeat_timeout_seconds=seconds,
            shutdown_timeout_seconds=max(seconds, 60),
        )
    except RuntimeError as error:
        done.set()
        raise WorkflowError(
            f"Cannot start JAX's distributed runtime: {str(error).splitlines()[0]} "
            "(it must start before JAX computes anything)."
        ) from None
    done.set()
    if jax.process_count() != group.num_processes:
        raise WorkflowError(
            f"JAX formed a group of {jax.process_count()} processes, not {group.num_processes}."
        )


def _initialize_torch(group):
    import datetime

    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        local = group.local_rank
        if local is None:
            local = group.process_id % torch.cuda.device_count()
        torch.cuda.set_device(local)
        engine = "nccl"
    else:
        engine = "gloo"
    try:
        dist.init_process_group(
            engine,
            init_method="env://" if group.launcher == "torchrun" else f"tcp://{group.coordinator}",
            world_size=group.num_processes,
            rank=group.process_id,
            timeout=datetime.timedelta(seconds=group.timeout),
        )
    except (RuntimeError, ValueError) as error:  # DistNetworkError, DistStoreError
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WorkflowError(f"{_join_failure_message(group)} ({detail})") from None


def shutdown(group, backend=None):
    """Leaves the process group after a run (PyTorch; JAX shuts down at exit).

    Example:
    >>> shutdown(ProcessGroup())
    """
    if not group.is_multi:
        return
    if (backend or keras.backend.backend()) == "torch":
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


# === Collectives on small host values ===


def all_gather_numbers(values, group, backend=None):
    """Every process's list of numbers (float64), in process order.

    Example:
    >>> all_gather_numbers([1.0, 2.0], ProcessGroup())
    [[1.0, 2.0]]
    """
    import numpy as np

    local = np.asarray(values, dtype="float64")
    if not group.is_multi:
        return [local.tolist()]
    backend = backend or keras.backend.backend()
    if backend == "jax":
        from jax.experimental import multihost_utils

        gathered = np.asarray(multihost_utils.process_allgather(local))
        return [row.tolist() for row in gathered.reshape(group.num_processes, -1)]
    import torch
    import torch.distributed as dist

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.as_tensor(local, device=device)
    rows = [torch.empty_like(tensor) for _ in range(group.num_processes)]
    dist.all_gather(rows, tensor)
    return [row.cpu().numpy().tolist() for row in rows]


# === Data ===


def shard_arguments(group):
    """`dict(num_shards=..., shard_index=...)` for `data.train_dataset`/`eval_dataset`.

    Example:
    >>> shard_arguments(ProcessGroup(4, 1, "h:1"))
    {'num_shards': 4, 'shard_index': 1}
    """
    return {"num_shards": group.num_processes, "shard_index": group.process_id}


# === Callbacks: who writes, resume agreement, fault injection ===


def _writing_callbacks():
    from keras_ba.training import callbacks

    return (
        callbacks.ResumableCSVLogger,
        callbacks.AtomicCheckpoint,
        callbacks.RunBackup,
        keras.callbacks.TensorBoard,
        keras.callbacks.CSVLogger,
        keras.callbacks.ModelCheckpoint,
        keras.callbacks.BackupAndRestore,
    )


def writes_files(callback):
    """Whether `callback` writes files (then only process 0 runs it).

    The run's own writers (history, checkpoint, backup), Keras' file
    callbacks, and any callback with an attribute `writes_files = True`.

    Example:
    >>> writes_files(keras.callbacks.CSVLogger("h.csv")), writes_files(keras.callbacks.TerminateOnNaN())
    (True, False)
    """
    return isinstance(callback, _writing_callbacks()) or bool(
        getattr(callback, "writes_files", False)
    )


@contextlib.contextmanager
def without_distribution():
    """Inside the block, new Keras variables live on this process only.

    On JAX with several processes, every variable created under the global
    `DataParallel` distribution is placed on all processes' devices, a
    collective that all processes must join. Keras' saving creates a few
    (a throw-away optimizer), so process 0 saves outside the distribution.

    Example:
    >>> with without_distribution():
    ...     keras.distribution.distribution() is None
    True
    """
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is None:
        yield
        return
    distribution = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)


class LocalWrites(keras.callbacks.Callback):
    """Runs a file-writing callback of process 0 outside the JAX distribution.

    Every hook runs inside `without_distribution()`, so saving a model or
    its weights stays on process 0 (see there).

    Example:
    >>> LocalWrites(keras.callbacks.CSVLogger("h.csv")).callback.filename
    'h.csv'
    """

    def __init__(self, callback):
        super().__init__()
        self.callback = callback

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params(params)

    def _local(self, hook, *args):
        with without_distribution():
            getattr(self.callback, hook)(*args)

    def on_train_begin(self, logs=None):
        self._local("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._local("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._local("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._local("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._local("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._local("on_train_batch_end", batch, logs)

    def on_test_begin(self, logs=None):
        self._local("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._local("on_test_end", logs)


def process_callbacks(callbacks, group, backend=None):
    """The callbacks of this process: all on process 0, no file writers elsewhere.

    On processes > 0 the callbacks that write files (`writes_files`) are
    dropped; the rest (NaN stop, learning rate logging...) run everywhere,
    so every process takes the same decisions. On JAX, process 0's writers
    run in `LocalWrites`.

    Example:
    >>> kept = process_callbacks([keras.callbacks.CSVLogger("h.csv"),
    ...     keras.callbacks.TerminateOnNaN()], ProcessGroup(2, 1, "h:1"))
    >>> [type(c).__name__ for c in kept]
    ['TerminateOnNaN']
    """
    backend = backend or keras.backend.backend()
    kept = []
    for callback in callbacks:
        if not group.is_multi:
            kept.append(callback)
        elif group.is_chief:
            local = writes_files(callback) and backend == "jax"
            kept.append(LocalWrites(callback) if local else callback)
        elif not writes_files(callback):
            kept.append(callback)
    return kept


def barrier(group, name, backend=None):
    """Waits until every process got here (no-op for one process).

    Example:
    >>> barrier(ProcessGroup(), "trained")
    """
    if not group.is_multi:
        return
    if (backend or keras.backend.backend()) == "jax":
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"keras_ba:{name}")
    else:
        import torch.distributed as dist

        dist.barrier()


def weights_fingerprint(model):
    """Sum and sum of squares of every model weight (float64): cheap to compare.

    Example:
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="ones")])
    >>> weights_fingerprint(model)
    [1.0, 1.0]
    """
    import numpy as np

    total, squares = 0.0, 0.0
    for weight in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(weight.value), dtype="float64")
        total += float(value.sum())
        squares += float(np.square(value).sum())
    return [total, squares]


def check_same_start(model, initial_epoch, group):
    """Stops before the first step unless every process starts the same way.

    After restoring, the processes compare their first epoch and a
    fingerprint of their weights. They differ when the backup is not
    visible to every machine (a run folder on local disks) or changed
    between the reads; training would otherwise hang or diverge.

    Raises:
        WorkflowError: naming the processes' epochs, or the process whose
            weights differ.

    Example:
    >>> check_same_start(None, 0, ProcessGroup())
    """
    if not group.is_multi:
        return
    rows = all_gather_numbers([initial_epoch] + weights_fingerprint(model), group)
    epochs = [int(row[0]) for row in rows]
    if len(set(epochs)) > 1:
        raise WorkflowError(
            f"The processes would resume from different epochs {epochs} (by process id): "
            "the run folder must be on storage that every machine sees (process 0 writes "
            "the backup, the others read it)."
        )
    first = rows[0][1:]
    for index, row in enumerate(rows[1:], start=1):
        if any(abs(a - b) > 1e-6 * max(1.0, abs(a)) for a, b in zip(first, row[1:], strict=True)):
            raise WorkflowError(
                f"Process {index} starts from other weights than process 0 (fingerprint "
                f"{row[1:]} vs {first}): the run folder must be on shared storage and the "
                "same command must run on every process."
            )


class Progress(keras.callbacks.Callback):
    """Remembers the current epoch and step (for the lost-peer message).

    Example:
    >>> Progress().where()
    'before the first epoch'
    """

    def __init__(self):
        super().__init__()
        self.epoch = None
        self.step = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.step = epoch, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.step = batch

    def where(self):
        if self.epoch is None:
            return "before the first epoch"
        return f"in epoch {self.epoch + 1}, step {self.step + 1}"


# === Losing a process ===

_PEER_LOST = re.compile(
    r"gloo|nccl|connection (closed|reset)|broken pipe|heartbeat|coordination service|"
    r"DEADLINE_EXCEEDED|UNAVAILABLE|timed out|DistBackendError|peer",
    re.IGNORECASE,
)


def is_peer_lost(error):
    """Whether `error` says that a collective lost another process.

    Example:
    >>> is_peer_lost(RuntimeError("Gloo AllGather failed: Connection closed by peer"))
    True
    """
    if isinstance(error, WorkflowError):
        return False
    return bool(_PEER_LOST.search(f"{type(error).__name__}: {error}"))


def peer_lost_message(group, where, error):
    """The one-line explanation printed when another process is gone.

    Example:
    >>> peer_lost_message(ProcessGroup(2, 0, "h:1"), "in epoch 2, step 1",
    ...                   RuntimeError("Connection reset by peer"))[:60]
    'Process 0 of 2 lost contact with another process in epoch 2,'
    """
    detail = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    detail = re.sub(r"Exception encountered when calling \S+\.", "", detail)
    detail = " ".join(detail.split())[:200]
    return (
        f"Process {group.process_id} of {group.num_processes} lost contact with another "
        f"process {where} ({type(error).__name__}: {detail}). Another process stopped "
        "(killed, out of memory, machine lost): see its log. The run folder keeps the last "
        f"finished epoch: start all {group.num_processes} processes again with the same "
        "command to resume."
    )


@contextlib.contextmanager
def peer_loss_guard(group, progress, backend=None):
    """Turns a collective that lost a process into a clear message and exit.

    JAX: prints the message and exits with status 1 at once (its runtime
    would abort the process at the next heartbeat or at shutdown). PyTorch:
    raises `WorkflowError` with the message.

    Example:
        with peer_loss_guard(group, progress):
            model.fit(...)
    """
    if not group.is_multi:
        yield
        return
    start = time.time()
    try:
        yield
    except Exception as error:
        if not is_peer_lost(error):
            raise
        message = peer_lost_message(group, progress.where(), error)
        message += f" (after {time.time() - start:.0f} s of training)"
        if (backend or keras.backend.backend()) == "jax":
            _exit_with(message)
        raise WorkflowError(message) from None
