"""Reads a checkpoint into a flat `{name: numpy array}` state dict.

Sources: a `.pth`/`.pt`/`.bin`/`.ckpt` file (read with
`torch.load(weights_only=True)`: an untrusted file cannot run code), a
`.safetensors` file, a NumPy `.npz` file, or any mapping of names to arrays
(NumPy, PyTorch, JAX or TensorFlow tensors). Wrappers (`{"state_dict": ...}`,
`{"model": ...}`) and `DataParallel`/DDP `module.` prefixes are removed, and
BatchNorm `num_batches_tracked` counters are dropped.

Training checkpoints often hold more than tensors: an epoch number, the best
accuracy as a NumPy scalar, optimizer state. Besides what PyTorch's
`weights_only` unpickler accepts by default, the NumPy scalar and numeric
dtype types that PyTorch documents as safe to allowlist
(`numpy.core.multiarray.scalar`, `numpy.dtype`, the `numpy.dtypes` classes of
booleans, integers, floats and complex numbers) are accepted, within a
`torch.serialization.safe_globals` context; any other pickled object is
refused without being executed.
"""

import collections.abc
import os

import numpy as np

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SUFFIXES = TORCH_SUFFIXES + (".safetensors", ".npz")
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")
SKIPPED_SUFFIXES = (".num_batches_tracked",)


class StateDict(dict):
    """A flat `{name: numpy array}` dict that remembers how it was read.

    Attributes:
        source: where it came from (a path, or `"<mapping>"`).
        skipped: keys dropped on reading (`num_batches_tracked`).
        notes: human-readable notes (wrapper removed, prefix stripped...).
    """

    def __init__(self, arrays, source, skipped=(), notes=()):
        super().__init__(arrays)
        self.source = source
        self.skipped = list(skipped)
        self.notes = list(notes)


def read_state_dict(source):
    """Reads `source` (a path or a mapping) into a `StateDict`.

    Args:
        source: path to a `.pth`/`.pt`/`.bin`/`.ckpt`, `.safetensors` or
            `.npz` file, or a mapping of names to arrays.

    Returns:
        A `StateDict`.

    Raises:
        ValueError: for a missing file, an unsupported suffix, a file that is
            not a checkpoint, a checkpoint carrying pickled objects other
            than tensors, or entries that are not numeric arrays.
        ImportError: when PyTorch (for `.pth`) or safetensors is missing.

    Example:
    >>> import numpy as np
    >>> state = read_state_dict({"module.fc.weight": np.zeros((10, 512))})
    >>> list(state), state.notes
    (['fc.weight'], ["stripped the 'module.' prefix"])
    """
    if isinstance(source, StateDict):
        return source
    if isinstance(source, collections.abc.Mapping):
        return _clean(source, "<mapping>", [])
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        raw, notes = _read_file(path)
        return _clean(raw, path, notes)
    raise ValueError(
        "Expected a checkpoint path or a mapping of names to arrays. "
        f"Received: {type(source).__name__}"
    )


# === Files ===


def _read_file(path):
    if not os.path.isfile(path):
        raise ValueError(f"The checkpoint file {path!r} does not exist.")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in TORCH_SUFFIXES:
        return _read_torch(path), []
    if suffix == ".safetensors":
        return _read_safetensors(path), []
    if suffix == ".npz":
        return _read_npz(path), []
    raise ValueError(
        f"Unsupported checkpoint file {path!r}: expected one of the suffixes {', '.join(SUFFIXES)}."
    )


def _read_torch(path):
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"Reading the PyTorch checkpoint {path!r} needs PyTorch "
            "(`pip install torch`; the CPU build is enough). Without it, save "
            "the state dict as `.safetensors` or `.npz` and convert that."
        ) from error
    import pickle

    try:
        with _numpy_safe_globals(torch):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only load failed" in str(error).lower():
            raise ValueError(
                f"Refused to load {path!r}: it contains pickled Python objects "
                "other than tensors, and unpickling them could run arbitrary "
                "code. Only state dicts (possibly wrapped with numbers, strings "
                "and NumPy scalars) are accepted. If you trust the "
                "file, extract its state dict in PyTorch first "
                "(`torch.save(torch.load(path, weights_only=False)['state_dict'], "
                "'clean.pth')`)." + _unpickling_detail(error)
            ) from error
        raise _not_a_checkpoint(path, "PyTorch", error) from error
    except Exception as error:  # torch raises KeyError, RuntimeError, EOFError...
        raise _not_a_checkpoint(path, "PyTorch", error) from error


def _read_safetensors(path):
    try:
        from safetensors.numpy import load_file
    except ImportError as error:
        raise ImportError(
            f"Reading {path!r} needs the `safetensors` package "
            "(`pip install safetensors`, or `pip install keras-ba[convert]`)."
        ) from error
    try:
        return load_file(path)
    except Exception as error:  # SafetensorError, OSError, ValueError
        raise _not_a_checkpoint(path, "safetensors", error) from error


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as error:  # BadZipFile, OSError, ValueError (object arrays)
        raise _not_a_checkpoint(path, "NumPy .npz", error) from error


# NumPy dtypes whose scalars a checkpoint may hold (numbers only: object,
# string and structured dtypes stay refused).
_NUMPY_SCALAR_TYPES = (
    "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "longdouble", "complex64", "complex128", "clongdouble",
)  # fmt: skip


def _numpy_safe_globals(torch):
    """A context allowlisting NumPy scalars and numeric dtypes for `torch.load`.

    Checkpoints pickled under NumPy 1 name the scalar constructor
    `numpy.core.multiarray.scalar`, under NumPy 2 `numpy._core.multiarray.scalar`:
    both names are allowed. Returns a no-op context on a PyTorch without
    `torch.serialization.safe_globals` (before 2.5).
    """
    import contextlib

    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:
        return contextlib.nullcontext()
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed = [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    allowed += list(dict.fromkeys(type(np.dtype(name)) for name in _NUMPY_SCALAR_TYPES))
    return safe_globals(allowed)


def _unpickling_detail(error):
    lines = [line.strip() for line in str(error).splitlines() if "global" in line.lower()]
    return f" PyTorch said: {lines[0]}" if lines else ""


def _not_a_checkpoint(path, kind, error):
    return ValueError(
        f"{path!r} is not a readable {kind} checkpoint "
        f"({type(error).__name__}: {str(error).strip()[:200]})."
    )


# === Cleaning ===


def _clean(raw, source, notes):
    raw = _unwrap(raw, source, notes)
    arrays, bad = {}, []
    for name, value in raw.items():
        array = _to_numpy(value)
        if array is None or not isinstance(name, str):
            bad.append(str(name))
        else:
            arrays[name] = array
    if bad:
        raise ValueError(
            f"{source!r} is not a state dict of tensors: these entries are not "
            f"numeric arrays: {', '.join(bad[:20])}"
            + (f" (and {len(bad) - 20} more)" if len(bad) > 20 else "")
        )
    arrays = _strip_prefixes(arrays, notes)
    skipped = [name for name in arrays if name.endswith(SKIPPED_SUFFIXES)]
    for name in skipped:
        del arrays[name]
    if not arrays:
        raise ValueError(f"{source!r} holds no weights.")
    return StateDict(arrays, source, skipped, notes)


def _unwrap(raw, source, notes):
    while isinstance(raw, collections.abc.Mapping):
        wrapper = next(
            (key for key in WRAPPER_KEYS if isinstance(raw.get(key), collections.abc.Mapping)),
            None,
        )
        if wrapper is None:
            return raw
        notes.append(f"took the {wrapper!r} entry of the checkpoint")
        raw = raw[wrapper]
    raise ValueError(
        f"{source!r} is not a state dict: it holds a {type(raw).__name__}, "
        "not a mapping of names to tensors."
    )


def _strip_prefixes(arrays, notes):
    stripped = True
    while stripped and arrays:
        stripped = False
        for prefix in STRIPPED_PREFIXES:
            if all(name.startswith(prefix) for name in arrays):
                arrays = {name[len(prefix) :]: value for name, value in arrays.items()}
                notes.append(f"stripped the {prefix!r} prefix")
                stripped = True
    return arrays


def _to_numpy(value):
    """A numeric NumPy array for a NumPy/PyTorch/JAX/TF value, else None."""
    if isinstance(value, (str, bytes, collections.abc.Mapping)) or value is None:
        return None
    try:
        if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
            value = value.detach().cpu()
            if str(value.dtype) == "torch.bfloat16":
                value = value.float()
            value = value.numpy()
        array = np.asarray(value)
    except Exception:
        return None
    return array if array.dtype.kind in "biuf" else None
