"""Loading `.keras` files that hold keras_ba objects, in any process.

Keras finds a custom class only if the module that registers it was
imported. `import keras_ba` is lazy (it imports no Keras), so a fresh
process that calls `keras.saving.load_model` first has to import the
modules that define the file's classes. `load_model` does that: it reads
the file's config and imports the keras_ba packages that register the
classes it names, then calls `keras.saving.load_model`.

Only a fixed list of packages is ever imported (`REGISTERING_PACKAGES`),
never a module because a file names it: a `.keras` file is data, and a
crafted one naming, say, `keras_ba.cli.__main__` must not run the command
line in the loading process. A file that names a keras_ba module outside
those packages is refused (`ValueError`) before anything is imported.

Example:
>>> import os, tempfile, keras
>>> import keras_ba
>>> from keras_ba.layers import BridgeAttention
>>> inputs = [keras.Input((4, 4, 8)), keras.Input((4, 4, 8))]
>>> model = keras.Model(inputs, BridgeAttention(reduction=2)(inputs))
>>> path = os.path.join(tempfile.mkdtemp(), "tiny.keras")
>>> model.save(path)
>>> type(keras_ba.load_model(path).layers[-1]).__name__
'BridgeAttention'
"""

import importlib
import json
import os
import zipfile


# Imported whatever the file says: they register the classes every model uses
# (the layers, and the module of every family in the table of named models).
def _core_modules():
    from keras_ba.applications import registry

    families = registry.family_modules()
    return ("keras_ba.layers", "keras_ba.applications", *families, "keras_ba.applications.hub")


CORE_MODULES = _core_modules()
# The only packages a file may make `load_model` import: each registers, on
# import, every serializable class of its sub-modules (a file names the
# sub-module that defines a class, e.g. `keras_ba.layers.bridge_attention`).
REGISTERING_PACKAGES = ("keras_ba.layers", "keras_ba.applications", "keras_ba.cv")


def register_serializables(modules=()):
    """Imports the keras_ba modules whose classes a `.keras` file may name.

    Args:
        modules: extra module names (e.g. `"keras_ba.cv"`), imported after
            `CORE_MODULES`.

    Returns:
        The tuple of module names imported.

    Example:
    >>> register_serializables()[:2]
    ('keras_ba.layers', 'keras_ba.applications')
    """
    names = tuple(dict.fromkeys(CORE_MODULES + tuple(modules)))
    for name in names:
        importlib.import_module(name)
    return names


def keras_ba_modules(path):
    """The `keras_ba` modules named by the config of the `.keras` file `path`.

    A file that is not a `.keras` archive names none (Keras reports it).

    Example:
    >>> keras_ba_modules("no/such/file.keras")
    []
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    found = set()
    _collect_modules(config, found)
    return sorted(found)


def _collect_modules(node, found):
    if isinstance(node, dict):
        module = node.get("module")
        if isinstance(module, str) and module.split(".")[0] == "keras_ba":
            found.add(module)
        for value in node.values():
            _collect_modules(value, found)
    elif isinstance(node, list):
        for value in node:
            _collect_modules(value, found)


def load_model(path, **kwargs):
    """`keras.saving.load_model` for a file with keras_ba objects.

    Imports the keras_ba packages that register the classes the file names
    (see `registering_packages`; nothing else, whatever the file says),
    then loads it; keyword arguments (`compile`, `safe_mode`,
    `custom_objects`) are Keras' own.

    Raises:
        ValueError: the file names a keras_ba module outside
            `REGISTERING_PACKAGES` (crafted, or from another program).

    Example:
        model = keras_ba.load_model("runs/digits/model.keras", compile=False)
    """
    import keras

    register_serializables(registering_packages(keras_ba_modules(path), path))
    return keras.saving.load_model(os.fspath(path), **kwargs)


def registering_packages(modules, path="the file"):
    """The packages of `REGISTERING_PACKAGES` to import for the named `modules`.

    Raises:
        ValueError: a module outside those packages (never imported).

    Example:
    >>> registering_packages(["keras_ba.layers.bridge_attention", "keras_ba.cv.backbone"])
    ('keras_ba.layers', 'keras_ba.cv')
    >>> registering_packages(["keras_ba.cli.__main__"], "evil.keras")
    Traceback (most recent call last):
    ...
    ValueError: 'evil.keras' names the module 'keras_ba.cli.__main__', which defines no model parts: refusing to load it (only classes of keras_ba.layers, keras_ba.applications, keras_ba.cv load; was the file made by another program?).
    """
    found = []
    for name in modules:
        package = next(
            (p for p in REGISTERING_PACKAGES if name == p or name.startswith(p + ".")), None
        )
        if package is None:
            raise ValueError(
                f"{os.fspath(path)!r} names the module {name!r}, which defines no model "
                f"parts: refusing to load it (only classes of {', '.join(REGISTERING_PACKAGES)} "
                "load; was the file made by another program?)."
            )
        if package not in found:
            found.append(package)
    return tuple(found)
