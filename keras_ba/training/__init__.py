"""Training workflow: data pipelines, the papers' recipes, callbacks, export.

The library behind `keras-ba train | evaluate | predict | export`:

- `data`: the embedded digits, image folders and local TFDS datasets as
  tf.data pipelines for every backend;
- `recipes`: `bav1`, `bav2` and `small`, every field overridable;
- `augment`: keras-cv augmentation applied layer by layer in tf.data;
- `callbacks`: run folder, CSV history, checkpoints, resume, atomic saves;
- `distribute`: MirroredStrategy (TensorFlow), DataParallel (JAX);
- `export`: TF Serving SavedModel with preprocessing inside, ONNX;
- `run`: `train`, `evaluate`, `predict`.

Names are imported on first use, so importing the package (and the
`keras-ba` command line) does not start TensorFlow under JAX or PyTorch.

Example:
    from keras_ba.training import DataSource, ModelSpec, get_recipe, train
    train(ModelSpec("ba_resnet18"), DataSource("digits"),
          get_recipe("small", epochs=3), "runs/digits")
"""

import importlib

_EXPORTS = {
    "DataSource": "data",
    "load_splits": "data",
    "WorkflowError": "errors",
    "export_model": "export",
    "ModelSpec": "models",
    "build_model": "models",
    "Recipe": "recipes",
    "get_recipe": "recipes",
    "list_recipes": "recipes",
    "evaluate": "run",
    "predict": "run",
    "train": "run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_ba.training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"keras_ba.training.{module}"), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
