"""ONNX export: the SavedModel's `serving_default` graph, converted by tf2onnx.

The ONNX graph is converted from the very TensorFlow function that the TF
Serving export writes (`serving.serving_function`), so both formats share one
preprocessing contract:

- input `images`: float32 `[batch, height, width, 3]`, RGB in [0, 255], any
  batch and any size; inside, central square crop, bilinear resize to
  `image_size / crop_pct`, central `image_size` crop and the ImageNet
  mean/std of `preprocess_input`;
- outputs `probabilities` float32 `[batch, classes]` and `class_ids` int32
  `[batch]`, as in the SavedModel.

Why tf2onnx on the TensorFlow graph (and not `torch.onnx` or `jax2onnx` from
the training backend): one graph for every backend, identical to the one TF
Serving runs, and Keras' own `model.export(format="onnx")` uses tf2onnx under
TensorFlow too. The opset is `OPSET` (ONNX Runtime >= 1.13, TensorRT >= 8.6).

Needs TensorFlow (the conversion) and the packages of the `export` extra:
`tf2onnx`, `onnx`, `onnxruntime` (the self-check after writing).

Example:
>>> OPSET
17
"""

import contextlib
import json
import logging
import os

import numpy as np

from keras_ba.errors import WorkflowError

OPSET = 17
PACKAGES = ("tf2onnx", "onnx", "onnxruntime")
TOLERANCE = 1e-4  # float32 self-check: ONNX Runtime against TensorFlow


def convert(model, image_size, crop_pct, class_names=None):
    """The ONNX `ModelProto` of `model` with the serving preprocessing inside.

    Needs the TensorFlow backend.

    Args:
        model: a keras_ba classifier (softmax or linear head).
        image_size: side of the model input.
        crop_pct: evaluation crop (`image_size / resize side`).
        class_names: stored in the model's metadata (`class_names`, JSON).

    Returns:
        An `onnx.ModelProto`.

    Raises:
        WorkflowError: the model uses an op that ONNX cannot express (named).

    Example:
        proto = convert(model, 32, 1.0, ["cat", "dog"]); onnx.save(proto, "model.onnx")
    """
    import tensorflow as tf
    import tf2onnx

    from keras_ba._keras_compat import grouped_convolutions_as_split
    from keras_ba.export.serving import serving_function

    spec = [tf.TensorSpec([None, None, None, 3], tf.float32, name="images")]
    # A function of its own, traced with grouped convolutions as plain ones
    # (tf2onnx cannot read the XLA call Keras uses for them on TensorFlow).
    with _quiet_tf2onnx(), grouped_convolutions_as_split():
        serve = serving_function(model, image_size, crop_pct)
        try:
            with _fast_optimizers():
                proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET)
        except Exception:
            # An optimizer failed: convert again, letting tf2onnx skip that optimizer.
            proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET)
    _check_ops(proto)
    _name_dimensions(proto)
    _probabilities_first(proto)
    metadata = {
        "class_names": json.dumps(list(class_names or [])),
        "image_size": str(image_size),
        "crop_pct": str(crop_pct),
        "input": "images: float32 [batch, height, width, 3], RGB in [0, 255]",
        "outputs": "probabilities: float32 [batch, classes]; class_ids: int32 [batch]",
    }
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"keras_ba {model.name}: RGB [0, 255] images -> class probabilities"
    return proto


def write_onnx(model, path, image_size, crop_pct, class_names=None, seed=0):
    """Writes `model` to the ONNX file `path`, then checks it with ONNX Runtime.

    The check runs the written file in ONNX Runtime on random images (at the
    input size and at another, non-square size) and compares the
    probabilities with the TensorFlow serving function's.

    Args:
        model: a keras_ba classifier; needs the TensorFlow backend.
        path: the `.onnx` file to write (written in place: callers write to a
            temporary folder and rename).
        image_size: side of the model input.
        crop_pct: evaluation crop.
        class_names: stored in the metadata.
        seed: seed of the check images.

    Returns:
        `dict(max_abs_diff=..., top1_agreement=..., images=...)` of the check.

    Raises:
        WorkflowError: an op ONNX cannot express, or a check beyond `TOLERANCE`
            (see `agreement.check_agreement`).

    Example:
        write_onnx(model, "export/model.onnx", 32, 1.0)["max_abs_diff"]  # ~1e-7
    """
    import onnx

    from keras_ba.export import agreement
    from keras_ba.export.serving import serving_function

    serve = serving_function(model, image_size, crop_pct)
    onnx.save(convert(model, image_size, crop_pct, class_names), path)
    rng = np.random.default_rng(seed)
    batches = [
        rng.uniform(0, 255, (4, image_size, image_size, 3)).astype("float32"),
        rng.uniform(0, 255, (2, image_size + 7, image_size + 3, 3)).astype("float32"),
    ]
    report = compare(path, serve, batches)
    return agreement.check_agreement(
        "ONNX Runtime", report, model, serve, batches, image_size, crop_pct, TOLERANCE
    )


def compare(path, reference, batches):
    """Max |difference| and top-1 agreement of ONNX Runtime against `reference`.

    Args:
        path: a `.onnx` file from `write_onnx`.
        reference: a function images -> `{"probabilities": ...}`, e.g.
            `serving.serving_function(model, image_size, crop_pct)`.
        batches: float32 image batches `[N, H, W, 3]` in [0, 255].

    Example:
        compare("model.onnx", serving_function(model, 32, 1.0), [images])["max_abs_diff"]
    """
    import onnxruntime
    import tensorflow as tf

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    diffs, agree, count = [], 0, 0
    for images in batches:
        expected = reference(tf.constant(images))["probabilities"].numpy()
        served = session.run(["probabilities"], {"images": images})[0]
        diffs.append(float(np.abs(served - expected).max()))
        agree += int((served.argmax(-1) == expected.argmax(-1)).sum())
        count += len(images)
    return {"max_abs_diff": max(diffs), "top1_agreement": agree / count, "images": count}


def _check_ops(proto):
    """Raises a one-line error naming the ops ONNX has no definition for."""
    import onnx

    unknown = {}
    for node in _all_nodes(proto.graph):
        if not onnx.defs.has(node.op_type, node.domain):
            unknown.setdefault(node.op_type, node.name)
    if unknown:
        where = ", ".join(f"{op} (node {name})" for op, name in sorted(unknown.items()))
        raise WorkflowError(
            f"ONNX cannot express the TensorFlow op(s) {where}: write the custom layer "
            "that uses them with keras.ops."
        )


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs]:
                yield from _all_nodes(subgraph)


def _name_dimensions(proto):
    """Readable names for the dynamic dimensions (tf2onnx writes `unk__N`)."""
    names = {"images": ["batch", "height", "width"], "probabilities": ["batch"]}
    names["class_ids"] = ["batch"]
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, names.get(value.name, []), strict=False):
            if not dim.HasField("dim_value"):
                dim.dim_param = name


def _probabilities_first(proto):
    """Output order `probabilities`, `class_ids` (`session.run(None, ...)[0]`)."""
    outputs = [type(value)() for value in proto.graph.output]
    for copy, value in zip(outputs, proto.graph.output, strict=True):
        copy.CopyFrom(value)
    outputs.sort(key=lambda value: value.name != "probabilities")
    del proto.graph.output[:]
    proto.graph.output.extend(outputs)


@contextlib.contextmanager
def _fast_optimizers():
    """tf2onnx without a deep copy of the graph before each optimizer pass.

    tf2onnx copies the whole graph (weights included) before every optimizer
    so that it can skip one that fails; that copying is more than half of
    the conversion time. Without it an optimizer failure raises, and
    `convert` converts again the careful way.
    """
    key = "TF2ONNX_CATCH_ERRORS"
    previous = os.environ.get(key)
    os.environ[key] = "FALSE"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


@contextlib.contextmanager
def _quiet_tf2onnx():
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
