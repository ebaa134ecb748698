"""Optional dependencies: which extra of keras-ba (`pip install -e ".[extra]"`) brings what.

The plain install (`pip install -e .`) gives the layers, the applications and the
checkpoint converter with `keras`, `numpy` and `h5py` only. The rest comes
with extras (see `pyproject.toml`); `require` imports an optional package
or raises `MissingExtraError` naming the extra to install.

Example:
>>> require("json", "train", "keras-ba train").__name__
'json'
>>> require("no_such_package_xyz", "train", "keras-ba train")
Traceback (most recent call last):
...
keras_ba.extras.MissingExtraError: keras-ba train needs the package 'no_such_package_xyz', ...
"""

import importlib

# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {
    "keras_cv": "keras-cv",
    "keras_hub": "keras-hub",
    "sklearn": "scikit-learn",
    "tensorflow_datasets": "tensorflow-datasets",
    "tf_keras_vis": "tf-keras-vis",
}


class MissingExtraError(ImportError):
    """An optional package is missing; the message names the extra to install.

    Example:
    >>> issubclass(MissingExtraError, ImportError)
    True
    """


def install_hint(extra):
    """How to install `extra` (keras-ba installs from its clone, not from the index).

    Example:
    >>> print(install_hint("train"))
    install keras-ba's "train" extra (in the keras_ba clone: pip install -e ".[train]")
    """
    return (
        f'install keras-ba\'s "{extra}" extra (in the keras_ba clone: pip install -e ".[{extra}]")'
    )


def require(module, extra, feature):
    """Imports `module` or explains which extra brings it.

    Args:
        module: import name, e.g. `"tensorflow"`.
        extra: the extra of keras-ba that installs it, e.g. `"train"`.
        feature: what needs it, for the message, e.g. `"keras-ba train"`.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: when the package is not installed.

    Example:
    >>> require("os", "train", "training").sep in ("/", "\\\\")
    True
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        missing = getattr(error, "name", None) or top
        if missing.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed
        package = DISTRIBUTIONS.get(top, top)
        raise MissingExtraError(
            f"{feature} needs the package {package!r}, which is not installed: "
            f"{install_hint(extra)}."
        ) from None
