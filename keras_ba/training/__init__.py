"""Training: the trainer, recipes, callbacks, named models and distribution.

The library behind `keras-ba train | evaluate | predict`, one module per
concept:

- `trainer`: `train` (resume, reruns, reproducibility);
- `recipes`: `bav1`, `bav2`, `small` and `adamw`, every field overridable;
- `models`: classifiers by name (`ModelSpec`), read from the one table of
  named models (`keras_ba.applications.registry`);
- `callbacks`: history, checkpoint and backup callbacks (atomic writes);
- `layout`: the training data format (`--data-format`);
- `compilation_cache`: JAX's persistent compilation cache;
- `inference`: `evaluate`, `predict`;
- `distributed`: `--distribute` (one mode table, strategies, process
  groups, the DDP loop).

Lower packages hold what training uses: `keras_ba.data` (sources,
pipelines, transforms, augmentation), `keras_ba.runs` (run folders,
`run.json`, backups, loading a trained model, plots), `keras_ba.export`
(SavedModel, ONNX, LiteRT) and `keras_ba.utils`.

Names are imported on first use, so importing the package (and the
`keras-ba` command line) does not start TensorFlow. The workflow needs the
`train` extra (in the keras_ba clone: `pip install -e ".[train]"`).

The modules that lived here before 0.3 (`keras_ba.training.run_folder`,
`.data`, `.export`, ...) still import, with a `DeprecationWarning` naming
their new home; they go away in the next release.

Example:
    from keras_ba.training import DataSource, ModelSpec, get_recipe, train
    train(ModelSpec("ba_resnet18"), DataSource("digits"),
          get_recipe("small", epochs=3), "runs/digits")
"""

from keras_ba.utils.lazy import lazy_exports, moved_modules

__getattr__, __dir__, __all__ = lazy_exports(
    "keras_ba.training",
    {
        "DataSource": "keras_ba.data.pipeline",
        "load_splits": "keras_ba.data.pipeline",
        "WorkflowError": "keras_ba.errors",
        "export_model": "keras_ba.export.saved_model",
        "evaluate": "keras_ba.training.inference",
        "predict": "keras_ba.training.inference",
        "ModelSpec": "keras_ba.training.models",
        "build_model": "keras_ba.training.models",
        "Recipe": "keras_ba.training.recipes",
        "get_recipe": "keras_ba.training.recipes",
        "list_recipes": "keras_ba.training.recipes",
        "RunConfig": "keras_ba.runs.folder",
        "RunPaths": "keras_ba.runs.folder",
        "load_trained_model": "keras_ba.runs.folder",
        "model_info": "keras_ba.runs.folder",
        "TrainResult": "keras_ba.training.trainer",
        "train": "keras_ba.training.trainer",
    },
)

moved_modules(
    "keras_ba.training",
    {
        "errors": "keras_ba.errors",
        "options": "keras_ba.options",
        "data": "keras_ba.data.pipeline",
        "transforms": "keras_ba.data.transforms",
        "augment": "keras_ba.data.augment",
        "run_folder": "keras_ba.runs.folder",
        "plots": "keras_ba.runs.plots",
        "export": "keras_ba.export.saved_model",
        "formats": "keras_ba.export.formats",
        "onnx_export": "keras_ba.export.onnx",
        "litert_export": "keras_ba.export.litert",
        "distribute": "keras_ba.training.distributed.strategies",
        "multiprocess": "keras_ba.training.distributed.launch",
        "ddp_loop": "keras_ba.training.distributed.ddp_loop",
    },
)
