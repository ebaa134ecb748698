"""A persistent XLA compilation cache for `keras-ba train` under JAX.

Building a model under JAX compiles one initializer per weight shape and
then the train step; with the cache on disk a second run with the same
shapes loads those programs instead of compiling them again.
"""

import os

ENV_VAR = "KERAS_BA_COMPILATION_CACHE"
OFF = ("off", "none", "0", "false")


def default_cache_dir():
    """`$XDG_CACHE_HOME/keras_ba/jax` (`~/.cache/keras_ba/jax` by default).

    Example:
    >>> default_cache_dir().endswith(os.path.join("keras_ba", "jax"))
    True
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "keras_ba", "jax")


def resolve_cache_dir(setting="auto"):
    """The cache folder `setting` asks for, or None when it is off.

    Args:
        setting: `"auto"` (the `KERAS_BA_COMPILATION_CACHE` environment
            variable if set, else `default_cache_dir()`), `"off"`, or a folder.

    Example:
    >>> resolve_cache_dir("off") is None, resolve_cache_dir("/tmp/c")
    (True, '/tmp/c')
    """
    if setting is None or setting == "auto":
        setting = os.environ.get(ENV_VAR) or default_cache_dir()
    if str(setting).strip().lower() in OFF:
        return None
    if not str(setting).strip():
        raise ValueError(f"`--compilation-cache` needs a folder, 'auto' or 'off'; got {setting!r}.")
    return os.path.abspath(os.path.expanduser(str(setting)))


def enable_compilation_cache(setting="auto"):
    """Turns JAX's persistent compilation cache on, in the folder `setting` gives.

    Does nothing (returns None) under another Keras backend, when `setting`
    is off, or when the user already set `JAX_COMPILATION_CACHE_DIR` (that
    one wins). Every compiled program is kept, small ones included (the
    per-weight initializers are what makes a first JAX step slow).

    Args:
        setting: see `resolve_cache_dir`.

    Returns:
        The folder in use, or None.

    Example:
    >>> enable_compilation_cache("off") is None
    True
    """
    import keras

    folder = resolve_cache_dir(setting)
    if folder is None or keras.backend.backend() != "jax":
        return None
    import jax

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    os.makedirs(folder, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
