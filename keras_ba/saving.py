"""Loading `.keras` files that hold keras_ba objects, in any process.

Keras finds a custom class only if the module that registers it was
imported. `import keras_ba` is lazy (it imports no Keras), so a fresh
process that calls `keras.saving.load_model` first has to import the
modules that define the file's classes. `load_model` does that: it reads
the file's config, imports every `keras_ba` module it names (layers,
applications, backbones, task models), then calls
`keras.saving.load_model`.

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
import importlib.util
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


def register_serializables(modules=()):
    """Imports the keras_ba modules whose classes a `.keras` file may name.

    Args:
        modules: extra module names (e.g. `"keras_ba.cv"`), imported after
            `CORE_MODULES`.

    Returns:
        The tuple of module names imported.

    Example:
    >>> register_serializables()[:3]
    ('keras_ba.layers', 'keras_ba.applications', 'keras_ba.applications.efficientnet')
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

    Imports the keras_ba modules the file names (see `keras_ba_modules`),
    then loads it; keyword arguments (`compile`, `safe_mode`,
    `custom_objects`) are Keras' own.

    Example:
        model = keras_ba.load_model("runs/digits/model.keras", compile=False)
    """
    import keras

    register_serializables(_importable(keras_ba_modules(path)))
    return keras.saving.load_model(os.fspath(path), **kwargs)


def _importable(modules):
    """Modules of this keras_ba that exist (a file from another version may name more)."""
    return tuple(name for name in modules if importlib.util.find_spec(name) is not None)
