"""Training workflow: run folders, data, recipes, callbacks, training, export.

The library behind `keras-ba train | evaluate | predict | export`, one
module per concept:

- `run_folder`: the run folder's layout (`RunPaths`), its `run.json`
  (`RunConfig`), atomic writes, the training-state backup, loading a
  trained model and its image size / crop / class names (`model_info`);
- `data`: the embedded digits, image folders and local TFDS datasets as
  tf.data pipelines for every backend, with their checks;
- `transforms`: normalization, center crop and the evaluation transform
  (TensorFlow ops; also used by the exported signature);
- `augment`: keras-cv training augmentation applied layer by layer;
- `recipes`: `bav1`, `bav2` and `small`, every field overridable;
- `models`: classifiers by name (`ModelSpec`), BA-ResNets with custom sizes;
- `callbacks`: history, checkpoint and backup callbacks (atomic writes);
- `distribute`: MirroredStrategy (TensorFlow), DataParallel (JAX);
- `trainer`: `train` (resume, reruns, reproducibility);
- `inference`: `evaluate`, `predict`;
- `export`: TF Serving SavedModel with preprocessing inside, ONNX;
- `options`: the choices shared with the command line (no heavy imports).

Names are imported on first use, so importing the package (and the
`keras-ba` command line) does not start TensorFlow. The workflow needs the
`train` extra (in the keras_ba clone: `pip install -e ".[train]"`).

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
    "evaluate": "inference",
    "predict": "inference",
    "ModelSpec": "models",
    "build_model": "models",
    "Recipe": "recipes",
    "get_recipe": "recipes",
    "list_recipes": "recipes",
    "RunConfig": "run_folder",
    "RunPaths": "run_folder",
    "load_trained_model": "run_folder",
    "model_info": "run_folder",
    "TrainResult": "trainer",
    "train": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_ba.training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"keras_ba.training.{module}"), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
