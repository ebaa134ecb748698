"""See what Bridge Attention does: the BAv1 paper's analyses and saliency maps.

- `attention_weights`: per-image channel weights of every attention layer
  (BA or SE, found by type), collected in one pass by a probe model built
  on the existing graph; `class_statistics`, `layer_table`, `stage_table`
  aggregate them as in the paper's Fig. 4.
- `bridge_importance`: the paper's Algorithm 1 (random-forest impurity
  importance of each bridged feature, per block; Fig. 5).
- `explain` / `overlay`: Grad-CAM, Grad-CAM++, Score-CAM and SmoothGrad
  through tf-keras-vis (TensorFlow; other backends run it in a TensorFlow
  subprocess from the `.keras` file).
- `analyze`: the report folder behind `keras-ba analyze`.

Names are imported on first use, so `import keras_ba.analysis` is cheap.

Example:
    from keras_ba.analysis import attention_weights, stage_table
    result = attention_weights(model, (images, labels))
    for row in stage_table(result):
        print(row["stage"], row["class_spread"])
"""

import importlib

_EXPORTS = {
    "AnalysisError": "errors",
    "AttentionWeights": "probe",
    "attention_probe": "probe",
    "attention_stages": "probe",
    "attention_weights": "probe",
    "find_attention_layers": "probe",
    "iterate_batches": "probe",
    "ClassStatistics": "stats",
    "class_statistics": "stats",
    "layer_table": "stats",
    "stage_table": "stats",
    "BridgeImportance": "importance",
    "bridge_importance": "importance",
    "feature_importance": "importance",
    "CAM_METHODS": "saliency",
    "explain": "saliency",
    "explain_file": "saliency",
    "overlay": "saliency",
    "analyze": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_ba.analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(f"keras_ba.analysis.{module}"), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
