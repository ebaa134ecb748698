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

from keras_ba.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    "keras_ba.analysis",
    {
        "AnalysisError": "keras_ba.analysis.errors",
        "AttentionWeights": "keras_ba.analysis.probe",
        "attention_probe": "keras_ba.analysis.probe",
        "attention_stages": "keras_ba.analysis.probe",
        "attention_weights": "keras_ba.analysis.probe",
        "find_attention_layers": "keras_ba.analysis.probe",
        "iterate_batches": "keras_ba.analysis.probe",
        "ClassStatistics": "keras_ba.analysis.stats",
        "class_statistics": "keras_ba.analysis.stats",
        "layer_table": "keras_ba.analysis.stats",
        "stage_table": "keras_ba.analysis.stats",
        "BridgeImportance": "keras_ba.analysis.importance",
        "bridge_importance": "keras_ba.analysis.importance",
        "feature_importance": "keras_ba.analysis.importance",
        "CAM_METHODS": "keras_ba.analysis.saliency",
        "explain": "keras_ba.analysis.saliency",
        "explain_file": "keras_ba.analysis.saliency",
        "overlay": "keras_ba.analysis.saliency",
        "analyze": "keras_ba.analysis.report",
    },
)
