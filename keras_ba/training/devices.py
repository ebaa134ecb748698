"""`--device auto|cpu|gpu`: which device trains, and the banner line saying so.

`cpu` hides the GPUs from every backend (`CUDA_VISIBLE_DEVICES=-1`, and
`JAX_PLATFORMS=cpu`) before the backend starts, so it must run before Keras
is imported; `gpu` refuses to train without a GPU instead of quietly using
the CPU; `auto` takes what the backend finds.

Example:
>>> hide_gpus_if_asked("auto", environ={})
False
"""

import os

from keras_ba.errors import WorkflowError
from keras_ba.options import DEVICES


def hide_gpus_if_asked(setting, environ=None):
    """For `setting == "cpu"`, hides the GPUs (call before importing Keras).

    Returns:
        Whether the GPUs were hidden.

    Example:
    >>> env = {}
    >>> hide_gpus_if_asked("cpu", environ=env), env["CUDA_VISIBLE_DEVICES"]
    (True, '-1')
    """
    if setting not in DEVICES:
        raise WorkflowError(f"`device` must be one of {DEVICES}. Received: `device={setting!r}`.")
    if setting != "cpu":
        return False
    environ = os.environ if environ is None else environ
    environ["CUDA_VISIBLE_DEVICES"] = "-1"
    environ["JAX_PLATFORMS"] = "cpu"
    return True


def gpu_names(backend):
    """Names of the GPUs `backend` sees (imports the backend's package).

    Example:
    >>> isinstance(gpu_names("tensorflow"), list)
    True
    """
    if backend == "tensorflow":
        import tensorflow as tf

        return [device.name for device in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [str(device) for device in jax.devices() if device.platform == "gpu"]
    if backend == "torch":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [torch.cuda.get_device_name(index) for index in range(count)]
    return []


def describe_devices(setting, backend):
    """The banner line naming the device(s) that train; checks `gpu`.

    Raises:
        WorkflowError: `setting == "gpu"` and the backend sees no GPU.

    Example:
    >>> describe_devices("cpu", "torch").startswith("Device: CPU")
    True
    """
    gpus = [] if setting == "cpu" else gpu_names(backend)
    if setting == "gpu" and not gpus:
        raise WorkflowError(
            f"`device=gpu` but the {backend} backend sees no GPU on this machine: use "
            "`device=cpu` (or auto), or install the backend's GPU build."
        )
    if gpus:
        return f"Device: {len(gpus)} GPU(s) ({', '.join(gpus)}) under {backend}."
    return f"Device: CPU ({os.cpu_count()} cores) under {backend}."
