"""Checks an exported file against the Keras model it came from.

Example:
>>> check_agreement("ONNX Runtime", {"max_abs_diff": 1e-7}, None, None, [], 32, 1.0, 1e-4)
{'max_abs_diff': 1e-07}
"""

from keras_ba.errors import WorkflowError


def check_agreement(runtime, report, model, reference, batches, image_size, crop_pct, tolerance):
    """Refuses a float32 export whose runtime disagrees with TensorFlow.

    The runtime's probabilities must match the TensorFlow `reference` to
    `tolerance`, or, for a model that amplifies float32 rounding, to ten
    times the difference between TensorFlow's own eager and graph runs of
    the same serving computation on the same images (added to `report` as
    `tensorflow_eager_vs_graph`).

    Raises:
        WorkflowError: naming both differences.

    Example:
    >>> check_agreement("ONNX Runtime", {"max_abs_diff": 1e-7}, None, None, [], 32, 1.0, 1e-4)
    {'max_abs_diff': 1e-07}
    """
    if report["max_abs_diff"] <= tolerance:
        return report
    import numpy as np
    import tensorflow as tf

    from keras_ba.export.serving import serving_function

    eager = serving_function(model, image_size, crop_pct).python_function
    noise = 0.0
    for images in batches:
        images = tf.constant(images)
        graph = reference(images)["probabilities"].numpy()
        noise = max(noise, float(np.abs(eager(images)["probabilities"].numpy() - graph).max()))
    report["tensorflow_eager_vs_graph"] = noise
    if report["max_abs_diff"] > max(tolerance, 10 * noise):
        raise WorkflowError(
            f"{runtime}'s probabilities differ from TensorFlow's by {report['max_abs_diff']:.2g} "
            f"(more than {tolerance:g}; TensorFlow's eager and graph runs differ by "
            f"{noise:.2g}): not exported."
        )
    return report
