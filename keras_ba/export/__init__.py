"""Export a trained `.keras` model: TF Serving SavedModel, ONNX, LiteRT.

One entry, `export_model` (`keras-ba export`); below it, one module per
concern and no circle: `serving` (the `serving_default` function: raw
images in, probabilities out), `agreement` (the exported file against the
Keras model), the writers `saved_model`, `onnx`, `litert`, and `formats`
(ONNX / LiteRT output paths, packages and dispatch).

Example:
    from keras_ba.export import export_model
    export_model("runs/digits/model.keras", "serving")  # serving/ba_resnet18/1
"""

from keras_ba.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    "keras_ba.export",
    {
        "export_model": "keras_ba.export.saved_model",
        "serving_function": "keras_ba.export.serving",
        "write_saved_model": "keras_ba.export.saved_model",
    },
)
