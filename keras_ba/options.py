"""Choices shared by the library and the command line.

Nothing here imports Keras or TensorFlow: the `keras-ba` parser is built
from these names, and `keras-ba --help` must answer at once.

Example:
>>> PRECISIONS["bfloat16"]
'mixed_bfloat16'
"""

DIGITS = "digits"  # the embedded data set
TFDS_PREFIX = "tfds:"
CACHE_MODES = ("auto", "memory", "none")
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
SUBSETS = ("validation", "train")
JIT_CHOICES = {"auto": "auto", "on": True, "off": False}
EXPORT_FORMATS = ("saved_model", "onnx", "litert")
QUANTIZE_MODES = ("none", "dynamic", "int8")  # LiteRT export
STEMS = ("auto", "cifar", "imagenet")
DATA_FORMATS = ("auto", "channels_last", "channels_first")  # see training.layout
NO_ATTENTION = "none"  # the command line's spelling of attention=None
VERBOSITY = ("auto", 0, 1, 2)

# `--distribute`: the one table of modes (the checks: training.distributed.modes).
# name: (backend that runs it or None for any, several processes possible, description)
DISTRIBUTE = {
    "none": (None, False, "one device"),
    "mirrored": ("tensorflow", False, "tf.distribute.MirroredStrategy (TensorFlow backend)"),
    "multi-worker": (
        "tensorflow",
        False,
        "tf.distribute.MultiWorkerMirroredStrategy from TF_CONFIG (TensorFlow backend)",
    ),
    "data-parallel": (
        "jax",
        True,
        "keras.distribution.DataParallel (JAX backend; one or several processes)",
    ),
    "ddp": (
        "torch",
        True,
        "torch DistributedDataParallel, one process per device (PyTorch backend)",
    ),
}
DISTRIBUTE_MODES = {name: row[2] for name, row in DISTRIBUTE.items()}  # name -> description
DEVICES = ("auto", "cpu", "gpu")  # --device


def resolve_verbosity(verbose, stream=None):
    """Keras' `verbose` for `verbose`; `"auto"` is 1 on a terminal, else 2.

    A progress bar (1) redraws its line with carriage returns and
    backspaces: in a log file or CI output that is noise, so `"auto"` gives
    one line per epoch (2) unless `stream` (default `sys.stdout`) is a
    terminal.

    Args:
        verbose: `"auto"`, 0, 1 or 2 (or their strings).
        stream: the output stream; default `sys.stdout`.

    Returns:
        0, 1 or 2.

    Example:
    >>> import io
    >>> resolve_verbosity("auto", io.StringIO()), resolve_verbosity("1")
    (2, 1)
    """
    import sys

    if verbose == "auto":
        stream = sys.stdout if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        return 1 if isatty is not None and isatty() else 2
    if str(verbose) not in ("0", "1", "2"):
        raise ValueError(f"`verbose` must be one of {VERBOSITY}. Received: verbose={verbose!r}")
    return int(verbose)
