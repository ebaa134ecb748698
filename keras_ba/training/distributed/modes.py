"""Every check of a `--distribute` mode, read from the one table
(`keras_ba.options.DISTRIBUTE`: backend, several processes, description).

| `--distribute` | backend    | what runs                                        |
| -------------- | ---------- | ------------------------------------------------ |
| `mirrored`     | tensorflow | `tf.distribute.MirroredStrategy` (one machine)   |
| `multi-worker` | tensorflow | `tf.distribute.MultiWorkerMirroredStrategy` (`TF_CONFIG`, one worker) |
| `data-parallel`| jax        | `keras.distribution.DataParallel` (one or several processes) |
| `ddp`          | torch      | `torch.nn.parallel.DistributedDataParallel` (`ddp_loop.fit`) |

Example:
>>> backend_of("ddp"), is_multi_process("mirrored")
('torch', False)
"""

import json
import os

from keras_ba.errors import WorkflowError
from keras_ba.options import DISTRIBUTE

MODES = tuple(DISTRIBUTE)
MULTI_PROCESS_MODES = tuple(name for name, row in DISTRIBUTE.items() if row[1])


def backend_of(mode):
    """The backend that runs `mode` (None: any).

    Example:
    >>> backend_of("none") is None
    True
    """
    return DISTRIBUTE[mode][0]


def is_multi_process(mode):
    """Whether `mode` can train with several processes.

    Example:
    >>> is_multi_process("data-parallel")
    True
    """
    return DISTRIBUTE[mode][1]


def resolve_mode(mode):
    """Checks `mode`; `mirrored` with `TF_CONFIG` set means `multi-worker`.

    Example:
    >>> resolve_mode("none")
    'none'
    >>> resolve_mode("nccl")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: `distribute_mode` must be one of ('none', 'mirrored', 'multi-worker', 'data-parallel', 'ddp'). Received: `distribute_mode='nccl'`.
    """
    if mode not in MODES:
        raise WorkflowError(
            f"`distribute_mode` must be one of {MODES}. Received: `distribute_mode={mode!r}`."
        )
    if mode == "mirrored" and os.environ.get("TF_CONFIG"):
        return "multi-worker"
    return mode


_ADVICE = {
    "torch": (
        "The PyTorch backend has no Keras multi-device API (keras.distribution "
        "is JAX-only): use `distribute_mode='ddp'` (torch DistributedDataParallel), or "
        "KERAS_BACKEND=tensorflow (`distribute_mode='mirrored'`) or jax "
        "(`distribute_mode='data-parallel'`)."
    ),
    "tensorflow": (
        "On TensorFlow use `distribute_mode='mirrored'` (one machine); for several "
        "machines use KERAS_BACKEND=jax (`distribute_mode='data-parallel'`) or torch "
        "(`distribute_mode='ddp'`)."
    ),
    "jax": "On JAX use `distribute_mode='data-parallel'` (one or several processes).",
}


def check_backend(mode, backend):
    """Raises a clear error when `backend` cannot run `mode`.

    Example:
    >>> check_backend("data-parallel", "torch")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: `distribute_mode='data-parallel'` needs KERAS_BACKEND=jax...
    """
    needed = backend_of(mode)
    if needed is None or needed == backend:
        return
    raise WorkflowError(
        f"`distribute_mode={mode!r}` needs KERAS_BACKEND={needed}, but the backend is "
        f"{backend!r}. " + _ADVICE.get(backend, "")
    )


def cluster_size():
    """Number of machines (workers and chief) in `TF_CONFIG`; 1 without one.

    Example:
    >>> cluster_size() >= 1
    True
    """
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def check_multi_worker(mode):
    """Refuses several workers: Keras 3's `fit` fails under them.

    `model.fit` with `MultiWorkerMirroredStrategy` over more than one worker
    fails in Keras 3 ("Attempt to convert a value (PerReplica...)",
    keras-team/keras#20585, open since TensorFlow 2.16), so this says so
    before any work. One worker runs.

    Example:
    >>> check_multi_worker("mirrored")
    """
    if mode == "multi-worker" and cluster_size() > 1:
        raise WorkflowError(
            f"TF_CONFIG describes {cluster_size()} machines, but Keras 3's fit does not run "
            "MultiWorkerMirroredStrategy over several workers (keras-team/keras#20585). "
            "Train on one machine with `distribute_mode='mirrored'` (all its GPUs), or on "
            "several machines with KERAS_BACKEND=jax and `distribute_mode='data-parallel'` or "
            "KERAS_BACKEND=torch and `distribute_mode='ddp'` (README: Training on several "
            "machines)."
        )


def check_batch(batch_size, count, unit="replicas"):
    """The global batch must split evenly over `count` replicas or processes.

    Example:
    >>> check_batch(6, 4)
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: `batch_size=6` (the global batch) does not split over 4 replicas: use a multiple of 4.
    """
    if batch_size % count:
        raise WorkflowError(
            f"`batch_size={batch_size}` (the global batch) does not split over "
            f"{count} {unit}: use a multiple of {count}."
        )
