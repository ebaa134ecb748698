"""LiteRT (TFLite) export: float32, dynamic-range int8 or full int8.

The LiteRT model is the SavedModel's serving function
(`serving.serving_function`) traced for a fixed input size, frozen and
converted by the converter TensorFlow ships (`tf.lite.TFLiteConverter`),
with TFLite builtin ops only (no Flex delegate, no custom ops), so the
plain LiteRT runtime of a phone or a microcontroller build runs it:

- signature `serving_default`, input `images`: float32
  `[batch, image_size, image_size, 3]`, RGB in [0, 255]. The size is fixed
  (what delegates and mobile image pipelines expect; they read it from the
  input tensor), the batch is dynamic (`resize_tensor_input`, or the
  signature runner resizes by itself). Inside, the ImageNet mean/std of
  `preprocess_input`; the app does the evaluation crop, i.e. resizes the
  shorter side to `round(image_size / crop_pct)` and takes the central
  `image_size` square (the SavedModel and ONNX do this inside);
- outputs `probabilities` float32 `[batch, classes]` and `class_ids` int32
  `[batch]`.

`quantize`: `"none"` (float32), `"dynamic"` (int8 weights, float
activations: about 4x smaller, no data needed), `"int8"` (weights and
activations int8, calibrated on a representative dataset; the input and
outputs stay float32, with quantize/dequantize ops at the edges).

Example:
>>> QUANTIZE_MODES
('none', 'dynamic', 'int8')
"""

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

import numpy as np

from keras_ba.errors import WorkflowError
from keras_ba.options import QUANTIZE_MODES

PACKAGES = ("ai_edge_litert",)
TOLERANCE = 1e-4  # float32 self-check: LiteRT against TensorFlow
DEFAULT_REPRESENTATIVE_COUNT = 100


def litert_function(model, image_size):
    """The serving function for a fixed `image_size`, without crop or resize.

    `serving.serving_function` at crop 1.0 on `image_size` x `image_size`
    images: its crop and resize fold away, leaving the normalization, the
    model, the softmax (for a linear head) and the arg max.

    Example:
        fn = litert_function(model, 32); fn(tf.zeros([2, 32, 32, 3]))["class_ids"]
    """
    import tensorflow as tf

    from keras_ba.export.serving import serving_function

    serve = serving_function(model, image_size, 1.0)
    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")

    @tf.function(input_signature=[spec])
    def fixed(images):
        return serve(images)

    return fixed


def convert(model, image_size, quantize="none", representative=None, function=None):
    """The LiteRT flatbuffer of `model` (bytes).

    Needs the TensorFlow backend.

    Args:
        model: a keras_ba classifier.
        image_size: side of the (fixed) input.
        quantize: one of `QUANTIZE_MODES`.
        representative: float32 images `[N, image_size, image_size, 3]` in
            [0, 255] for the `"int8"` calibration.
        function: `litert_function(model, image_size)` if already made.

    Raises:
        WorkflowError: an op LiteRT cannot express (named), or an op without
            an int8 kernel for `"int8"`.

    Example:
        open("model.tflite", "wb").write(convert(model, 32, "dynamic"))
    """
    import tensorflow as tf

    if quantize not in QUANTIZE_MODES:
        raise WorkflowError(f"--quantize must be one of {QUANTIZE_MODES}, received {quantize!r}.")
    if quantize == "int8" and (representative is None or len(representative) == 0):
        raise WorkflowError("--quantize int8 needs representative images (--representative-data).")
    function = function or litert_function(model, image_size)
    with tempfile.TemporaryDirectory() as folder, _quiet_absl():
        _save_frozen(function, folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            folder, signature_keys=["serving_default"]
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "int8":
            images = np.asarray(representative, "float32")
            converter.representative_dataset = lambda: ({"images": x[None]} for x in images)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            # the calibrator warns that tf.lite.Interpreter is deprecated
            with warnings.catch_warnings(), _native_stderr_captured():
                warnings.simplefilter("ignore")
                return converter.convert()
        except Exception as error:
            raise WorkflowError(_conversion_error(error, quantize)) from None


@contextlib.contextmanager
def _quiet_absl():
    """No "unsaved custom gradients" warning: the converter needs no gradients.

    A filter, not a level: absl resets its logger's level from its flags.
    """
    logger = logging.getLogger("absl")

    def errors_only(record):
        return record.levelno >= logging.ERROR

    logger.addFilter(errors_only)
    try:
        yield
    finally:
        logger.removeFilter(errors_only)


@contextlib.contextmanager
def _native_stderr_captured():
    """Keeps the converter's C++ log lines (MLIR dumps) off the terminal.

    Whatever they say is also in the exception, which `_conversion_error`
    turns into one line.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _save_frozen(function, folder):
    """Saves `function`, variables frozen into constants, as a SavedModel.

    The signature `serving_default` keeps the names `images`,
    `probabilities` and `class_ids`. Frozen, because the converter cannot
    freeze Keras 3 variables itself (it leaves READ_VARIABLE ops that read
    uninitialized memory); without custom gradients, which the converter
    does not need and which fail to save for Keras' swish (EfficientNet).
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    concrete = function.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    keys = sorted(concrete.structured_outputs)  # the flat output order
    spec = concrete.structured_input_signature[0][0]

    @tf.function(input_signature=[spec])
    def serving_default(images):
        return dict(zip(keys, frozen(images), strict=True))

    module = tf.Module()
    module.serving_default = serving_default
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
    signatures = {"serving_default": serving_default.get_concrete_function()}
    tf.saved_model.save(module, folder, signatures=signatures, options=options)


def _conversion_error(error, quantize):
    message = str(error)
    ops = re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message)
    if not ops:
        match = re.search(r"Custom ops: ([\w, ]+)", message)
        ops = match.group(1).split(", ") if match else []
    if ops:
        where = []
        for op in sorted(set(ops)):
            nodes = re.findall(rf"([\w/-]+)/{op}@", message)
            node = nodes[0].split("StatefulPartitionedCall/")[-1] if nodes else None
            where.append(f"{op} (node {node}/{op})" if node else op)
        return (
            f"LiteRT cannot express the TensorFlow op(s) {', '.join(where)} with its builtin "
            "ops: write the custom layer that uses them with keras.ops."
        )
    if quantize == "int8" and re.search(r"quantiz|int8", message, re.IGNORECASE):
        first = message.strip().splitlines()[0] if message.strip() else type(error).__name__
        return f"Full int8 quantization is not possible for this model ({first}); use --quantize dynamic."
    lines = [line for line in message.splitlines() if "error" in line.lower()] or [message]
    return f"The LiteRT conversion failed: {lines[0].strip()[:300]}"


def write_litert(
    model, path, image_size, quantize="none", representative=None, check_images=None, seed=0
):
    """Writes the LiteRT file `path` and checks it with the LiteRT interpreter.

    The check runs the written file in `ai_edge_litert`'s interpreter on
    `check_images` (default: 8 random images) and compares with the
    TensorFlow serving function: for float32 the probabilities must agree
    to `TOLERANCE` (see `agreement.check_agreement`); for int8 the agreement
    is reported, not enforced.

    Args:
        model: a keras_ba classifier; needs the TensorFlow backend.
        path: the `.tflite` file to write.
        image_size: side of the input.
        quantize: one of `QUANTIZE_MODES`.
        representative: calibration images for `"int8"` (see `convert`).
        check_images: float32 `[N, image_size, image_size, 3]` in [0, 255].
        seed: seed of the random check images.

    Returns:
        `dict(max_abs_diff=..., top1_agreement=..., images=..., size_bytes=...)`.

    Example:
        write_litert(model, "export/model.tflite", 32)["max_abs_diff"]  # ~1e-7
    """
    function = litert_function(model, image_size)
    flatbuffer = convert(model, image_size, quantize, representative, function)
    with open(path, "wb") as file:
        file.write(flatbuffer)
    if check_images is None:
        rng = np.random.default_rng(seed)
        check_images = rng.uniform(0, 255, (8, image_size, image_size, 3)).astype("float32")
    report = compare(path, function, check_images)
    report["size_bytes"] = len(flatbuffer)
    if quantize == "none":
        from keras_ba.export import agreement

        batches = [np.asarray(check_images, "float32")]
        agreement.check_agreement(
            "LiteRT", report, model, function, batches, image_size, 1.0, TOLERANCE
        )
    return report


def compare(path, reference, images):
    """Max |difference| and top-1 agreement of the LiteRT file against `reference`.

    Args:
        path: a `.tflite` file from `write_litert`.
        reference: a function images -> `{"probabilities": ...}`, e.g.
            `litert_function(model, image_size)`.
        images: float32 `[N, image_size, image_size, 3]` in [0, 255].

    Example:
        compare("model.tflite", litert_function(model, 32), images)["top1_agreement"]
    """
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    images = np.asarray(images, "float32")
    expected = reference(tf.constant(images))["probabilities"].numpy()
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    served = runner(images=images)["probabilities"]
    return {
        "max_abs_diff": float(np.abs(served - expected).max()),
        "top1_agreement": float((served.argmax(-1) == expected.argmax(-1)).mean()),
        "images": len(images),
    }


def representative_images(source, image_size, crop_pct, count=DEFAULT_REPRESENTATIVE_COUNT):
    """Calibration images as the LiteRT model sees them (float32, [0, 255]).

    Args:
        source: `"digits"`, `"tfds:<name>"` or a `DataSource` (the first
            `count` training images), or a folder of images (searched
            recursively, `count` files spread over the sorted list).
        image_size: side of the model input.
        crop_pct: evaluation crop: images are cropped to a central square,
            resized to `round(image_size / crop_pct)` and cropped to the
            central `image_size` square, as the app would.
        count: how many images.

    Returns:
        Float32 array `[N, image_size, image_size, 3]`, N <= count.

    Raises:
        WorkflowError: no images, a missing folder, a bad count.

    Example:
    >>> representative_images("digits", 16, 1.0, count=3).shape
    (3, 16, 16, 3)
    """
    from keras_ba.data import pipeline as data

    if not isinstance(count, int) or count < 1:
        raise WorkflowError(
            f"--representative-count must be a positive integer, received {count!r}."
        )
    if not isinstance(source, data.DataSource):
        if os.path.isdir(str(source)):
            return _folder_images(str(source), image_size, crop_pct, count)
        source = data.DataSource(str(source))
    if source.kind == "folder":
        return _folder_images(source.data, image_size, crop_pct, count)
    load_size = int(round(image_size / crop_pct))
    splits = data.load_splits(source, load_size)
    images = [image for image, _ in splits.train.take(count).as_numpy_iterator()]
    return _network_view(np.stack(images), image_size, crop_pct)


def _folder_images(folder, image_size, crop_pct, count):
    from keras_ba.data import pipeline as data

    files = sorted(data.list_image_files([folder]))
    step = max(1, len(files) // count)
    picked = files[::step][:count]
    return np.concatenate(
        [_network_view(data.read_image(f)[None], image_size, crop_pct) for f in picked]
    )


def _network_view(images, image_size, crop_pct):
    """`transforms.eval_transform` without the normalization: pixels in [0, 255]."""
    import tensorflow as tf

    from keras_ba.data import transforms

    images = tf.cast(images, tf.float32)
    side = min(images.shape[1], images.shape[2])
    images = transforms.center_crop(images, side)
    load_size = int(round(image_size / crop_pct))
    if side != load_size:
        images = tf.image.resize(images, (load_size, load_size))
    return transforms.center_crop(images, image_size).numpy()
