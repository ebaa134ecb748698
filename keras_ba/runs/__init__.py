"""Run folders: their layout (`RunPaths`), `run.json` (`RunConfig`), the
training-state backup, the history, loading a trained model with its image
size / crop / class names, and the history plots.

Example:
    from keras_ba.runs import load_trained_model
    model = load_trained_model("runs/digits")
"""

from keras_ba.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    "keras_ba.runs",
    {
        "RunConfig": "keras_ba.runs.folder",
        "RunPaths": "keras_ba.runs.folder",
        "load_trained_model": "keras_ba.runs.folder",
        "model_info": "keras_ba.runs.folder",
        "read_history": "keras_ba.runs.folder",
    },
)
