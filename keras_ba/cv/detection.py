"""Object detection with BA backbones: KerasHub's RetinaNet, keras-cv's YOLOv8.

`build_retinanet` puts KerasHub's maintained `RetinaNetObjectDetector` on a
BA backbone (through `RetinaNetBackbone(image_encoder=...)`);
`build_yolo_v8` uses keras-cv's `YOLOV8Detector` (no maintained library has
YOLOv8 for Keras 3) on a `BABackbone`. This module also feeds them
(`detection_dataset`: tf.data with keras-cv's box-aware `JitteredResize`,
which Keras core lacks), scores them (`evaluate_map`: keras-cv's
`BoxCOCOMetrics`, the only Keras COCO mAP) and exports them for TF Serving
(`export_detector`).

Input convention: like every keras_ba model, a detector takes images
normalised with the ImageNet mean and standard deviation
(`keras_ba.applications.preprocess_input` of RGB in [0, 255]); the pipeline
and the exported signature do that step, so both take raw RGB.

Example:
>>> check_bounding_box_format("xyxy")
'xyxy'
"""

import os
import shutil
import subprocess
import sys
import tempfile

import keras
import keras_cv
import numpy as np

from keras_ba.cv.detectors import (  # noqa: F401  (keras_ba.cv.detection's names)
    BOX_FORMATS,
    build_retinanet,
    build_yolo_v8,
    check_bounding_box_format,
)

DETECTORS = ("retinanet", "yolo_v8")
CLASS_KEYS = {"labels": "classes"}  # KerasHub's name -> keras-cv's, in predictions
MAP50 = "MaP@[IoU=50]"  # keras-cv's name for mAP at IoU 0.5


# === Checks ===


def check_detection_data(images, bounding_boxes, bounding_box_format):
    """Checks images and boxes before they reach a detector.

    Every real box (class >= 0) must lie inside its image with a positive
    width and height once read in `bounding_box_format`; padding rows have
    class -1. This catches boxes given in another format (pixels passed as
    `"rel_xyxy"`, `"xywh"` passed as `"xyxy"` when it makes boxes inside
    out...) before training quietly learns nonsense.

    Args:
        images: `(N, H, W, 3)` array.
        bounding_boxes: dict with `"boxes"` `(N, M, 4)` and `"classes"`
            `(N, M)`, padded with -1.
        bounding_box_format: the format of `"boxes"`.

    Returns:
        `(images, boxes, classes)` as float32 NumPy arrays.

    Raises:
        ValueError: naming the first problem found.

    Example:
    >>> images = np.zeros((1, 32, 32, 3))
    >>> boxes = {"boxes": [[[2.0, 2.0, 40.0, 9.0]]], "classes": [[0.0]]}
    >>> check_detection_data(images, boxes, "xyxy")
    Traceback (most recent call last):
    ...
    ValueError: 1 of 1 boxes do not fit bounding_box_format='xyxy' on 32x32 images (outside the image or with no area); first: image 0, box [2.0, 2.0, 40.0, 9.0]. Are the boxes in another format?
    """
    check_bounding_box_format(bounding_box_format)
    if not isinstance(bounding_boxes, dict) or not {"boxes", "classes"} <= set(bounding_boxes):
        raise ValueError(
            "`bounding_boxes` must be a dict with 'boxes' (N, M, 4) and "
            f"'classes' (N, M). Received: {type(bounding_boxes).__name__}"
            + (f" with keys {sorted(bounding_boxes)}" if isinstance(bounding_boxes, dict) else "")
        )
    images = np.asarray(images, "float32")
    boxes = np.asarray(bounding_boxes["boxes"], "float32")
    classes = np.asarray(bounding_boxes["classes"], "float32")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"`images` must have shape (N, H, W, 3). Received: {images.shape}")
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"Boxes must have shape (N, M, 4). Received: {boxes.shape}")
    if classes.shape != boxes.shape[:2]:
        raise ValueError(
            f"Classes must have shape (N, M) = {boxes.shape[:2]} to match the "
            f"boxes. Received: {classes.shape}"
        )
    if len(images) != len(boxes):
        raise ValueError(
            f"Images and boxes do not match: {len(images)} images but boxes for {len(boxes)}."
        )
    if not np.all(np.isfinite(boxes)) or not np.all(np.isfinite(classes)):
        raise ValueError("Boxes and classes must be finite numbers (pad with -1).")
    height, width = images.shape[1:3]
    xyxy = keras_cv.bounding_box.convert_format(
        boxes, source=bounding_box_format, target="xyxy", image_shape=(height, width, 3)
    )
    xyxy = keras.ops.convert_to_numpy(xyxy)
    tolerance = 1e-3 * max(height, width)
    real = classes >= 0
    bad = real & (
        (xyxy[..., 0] < -tolerance)
        | (xyxy[..., 1] < -tolerance)
        | (xyxy[..., 2] > width + tolerance)
        | (xyxy[..., 3] > height + tolerance)
        | (xyxy[..., 2] <= xyxy[..., 0])
        | (xyxy[..., 3] <= xyxy[..., 1])
    )
    if bad.any():
        image, row = np.argwhere(bad)[0]
        raise ValueError(
            f"{int(bad.sum())} of {int(real.sum())} boxes do not fit "
            f"bounding_box_format={bounding_box_format!r} on {height}x{width} "
            f"images (outside the image or with no area); first: image "
            f"{image}, box {boxes[image, row].tolist()}. Are the boxes in another format?"
        )
    return images, boxes, classes


def _as_format(boxes, classes, bounding_box_format, image_shape):
    """`"xyxy"` pixel boxes -> `bounding_box_format`, padding kept at -1."""
    converted = keras_cv.bounding_box.convert_format(
        boxes, source="xyxy", target=bounding_box_format, image_shape=image_shape
    )
    converted = np.asarray(keras.ops.convert_to_numpy(converted), "float32")
    converted[classes < 0] = -1.0
    return converted


def to_bounding_boxes(data, bounding_box_format):
    """`make_digit_canvases` output -> keras-cv `{"boxes", "classes"}`.

    Example:
    >>> from keras_ba.cv.datasets import make_digit_canvases
    >>> data = make_digit_canvases(1, image_size=64, seed=0)
    >>> rel = to_bounding_boxes(data, "rel_xyxy")["boxes"]
    >>> bool(rel.max() <= 1.0)
    True
    """
    check_bounding_box_format(bounding_box_format)
    shape = data["images"].shape[1:]
    boxes = _as_format(data["boxes"], data["classes"], bounding_box_format, shape)
    return {"boxes": boxes, "classes": np.asarray(data["classes"], "float32")}


# === tf.data ===


def detection_dataset(
    images,
    bounding_boxes,
    bounding_box_format,
    batch_size=16,
    augment=False,
    flip=False,
    scale_factor=(0.75, 1.25),
    shuffle=False,
    seed=0,
    class_key="classes",
):
    """A tf.data pipeline of `(normalized images, {"boxes", "classes"})`.

    Augmentation uses keras-cv's box-aware layers, each in its own `map` (so
    the pipeline feeds the JAX and PyTorch backends too):
    `JitteredResize` (random scale in `scale_factor` and a random crop back
    to the image size) and, with `flip=True`, a horizontal `RandomFlip`
    (off by default: mirrored digits are not digits). Images are then
    normalised (`preprocess_input`) and boxes padded to a dense tensor.

    Args:
        images: `(N, H, W, 3)` RGB in [0, 255].
        bounding_boxes: dict with `"boxes"` `(N, M, 4)` in
            `bounding_box_format` and `"classes"` `(N, M)`, padded with -1.
        bounding_box_format: any keras-cv format (`BOX_FORMATS`).
        batch_size: images per batch.
        augment: apply `JitteredResize` (and `RandomFlip` with `flip`).
        flip: add a horizontal flip to the augmentation.
        scale_factor: `(low, high)` of `JitteredResize`.
        shuffle: reshuffle the images every epoch.
        seed: seed of the shuffle and the augmentation.
        class_key: the name of the classes in the targets: `"classes"`
            (keras-cv's YOLOv8) or `"labels"` (KerasHub's RetinaNet).

    Returns:
        A `tf.data.Dataset`; boxes come out in `bounding_box_format`, at most
        `M` per image.

    Raises:
        ValueError: for data that `check_detection_data` rejects.

    Example:
    >>> from keras_ba.cv.datasets import make_digit_canvases
    >>> data = make_digit_canvases(4, seed=0)
    >>> ds = detection_dataset(data["images"], to_bounding_boxes(data, "xywh"),
    ...                        "xywh", batch_size=2, augment=True)
    >>> images, boxes = next(iter(ds))
    >>> tuple(images.shape), tuple(boxes["boxes"].shape)
    ((2, 64, 64, 3), (2, 3, 4))
    """
    import tensorflow as tf

    from keras_ba.data.augment import normalize

    images, boxes, classes = check_detection_data(images, bounding_boxes, bounding_box_format)
    if class_key not in ("classes", "labels"):
        raise ValueError(f"`class_key` must be 'classes' or 'labels'. Received: {class_key!r}")
    height, width = images.shape[1:3]
    max_boxes = boxes.shape[1]
    ds = tf.data.Dataset.from_tensor_slices(
        {"images": images, "bounding_boxes": {"boxes": boxes, "classes": classes}}
    )
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment:
        layers = [
            keras_cv.layers.JitteredResize(
                target_size=(height, width),
                scale_factor=tuple(scale_factor),
                bounding_box_format=bounding_box_format,
                seed=seed,
            )
        ]
        if flip:
            layers.append(
                keras_cv.layers.RandomFlip(
                    "horizontal", bounding_box_format=bounding_box_format, seed=seed
                )
            )
        for layer in layers:  # one map each: a Sequential fails in tf.data off TF
            ds = ds.map(
                lambda batch, layer=layer: layer(batch, training=True),
                num_parallel_calls=tf.data.AUTOTUNE,
            )

    def finish(batch):
        dense = keras_cv.bounding_box.to_dense(batch["bounding_boxes"], max_boxes=max_boxes)
        dense = {
            "boxes": tf.reshape(tf.cast(dense["boxes"], tf.float32), [-1, max_boxes, 4]),
            class_key: tf.reshape(tf.cast(dense["classes"], tf.float32), [-1, max_boxes]),
        }
        return normalize(batch["images"]), dense

    return ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# === Prediction and mAP ===


def predict_boxes(model, images, batch_size=32):
    """Decoded detections (after non-max suppression) as NumPy arrays.

    Args:
        model: a keras-cv detector.
        images: `(N, H, W, 3)` normalised images (`preprocess_input`).
        batch_size: images per forward pass.

    Returns:
        dict with `"boxes"` `(N, K, 4)` in the model's format, `"classes"`,
        `"confidence"` `(N, K)` (padded with -1) and `"num_detections"` `(N,)`.

    Example:
        detections = predict_boxes(model, preprocess_input(images))
    """
    outputs = model.predict(np.asarray(images, "float32"), batch_size=batch_size, verbose=0)
    return {CLASS_KEYS.get(key, key): np.asarray(value) for key, value in outputs.items()}


def evaluate_map(model, images, bounding_boxes, batch_size=32):
    """COCO metrics of `model` with keras-cv's `BoxCOCOMetrics`.

    Args:
        model: a keras-cv detector.
        images: `(N, H, W, 3)` normalised images.
        bounding_boxes: the true `{"boxes", "classes"}` in the model's format.
        batch_size: images per forward pass.

    Returns:
        dict of floats with keras-cv's keys: `"MaP"` (IoU 0.5:0.95),
        `"MaP@[IoU=50]"` (mAP at IoU 0.5), `"MaP@[IoU=75]"`, recalls...

    Example:
        evaluate_map(model, images, boxes)["MaP@[IoU=50]"]
    """
    metric = keras_cv.metrics.BoxCOCOMetrics(model.bounding_box_format, evaluate_freq=10**9)
    metric.update_state(
        {key: np.asarray(bounding_boxes[key], "float32") for key in ("boxes", "classes")},
        predict_boxes(model, images, batch_size),
    )
    return {key: float(value) for key, value in metric.result(force=True).items()}


# === Export for TF Serving ===


def export_detector(model, target, image_size=None):
    """Writes a TF Serving SavedModel of a detector: raw images -> boxes.

    Signature `serving_default`: input `images` float32
    `[batch, H, W, 3]`, RGB in [0, 255] (normalised inside); outputs
    `boxes` `[batch, K, 4]` (the model's `bounding_box_format`),
    `classes` int32 `[batch, K]`, `scores` `[batch, K]` (-1 padding) and
    `num_detections` int32 `[batch]`, after non-max suppression. The anchors
    depend on the image size, so `H` and `W` are fixed.

    The export runs under the TensorFlow backend (in a subprocess from JAX
    or PyTorch). The folder is written under a temporary name and renamed:
    a failed export leaves nothing behind.

    Args:
        model: a keras-cv detector, or the path to its `.keras` file.
        target: the SavedModel folder to create (must not exist).
        image_size: `(H, W)` of the served images; default the model's
            input size (required when the model takes any size).

    Returns:
        `target`.

    Example:
        export_detector(model, "serving/digits/1", image_size=(64, 64))
        # tf.saved_model.load("serving/digits/1").signatures["serving_default"]
    """
    target = os.fspath(target)
    if os.path.exists(target):
        raise ValueError(f"The export target {target!r} already exists.")
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ValueError(f"No model file at {path!r}.")
        model = None
    else:
        _check_detector(model)
        path = None
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    if keras.backend.backend() == "tensorflow":
        model = model or _load_detector(path)
        _write_saved_model(model, target, _image_size(model, image_size))
        return target
    work = tempfile.mkdtemp(prefix=".tmp-", dir=folder)
    try:
        if path is None:
            _image_size(model, image_size)  # fail here, not in the subprocess
            path = os.path.join(work, "detector.keras")
            model.save(path)
        command = [sys.executable, "-m", "keras_ba.cv.detection", path, target]
        if image_size is not None:
            command += ["--image-size", *(str(int(side)) for side in _pair(image_size))]
        result = subprocess.run(
            command,
            env=dict(os.environ, KERAS_BACKEND="tensorflow"),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            message = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise ValueError(f"The export under TensorFlow failed: {message}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _pair(image_size):
    sides = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(sides) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 32 for s in sides):
        raise ValueError(
            "Received an invalid value for `image_size`, expected an integer "
            f"or (height, width) of at least 32. Received: image_size={image_size!r}"
        )
    return sides


def _image_size(model, image_size):
    if image_size is not None:
        return _pair(image_size)
    sides = tuple(model.input_shape[1:3])
    if None in sides:
        raise ValueError(
            f"The detector {model.name!r} takes images of any size: pass "
            "`image_size=(height, width)` for the serving signature."
        )
    return sides


def _check_detector(model):
    if not (hasattr(model, "decode_predictions") and hasattr(model, "bounding_box_format")):
        raise ValueError(
            f"Expected a detector (KerasHub RetinaNetObjectDetector, keras-cv YOLOV8Detector), got "
            f"{type(model).__name__} {getattr(model, 'name', '')!r}."
        )


def _load_detector(path):
    from keras_ba.saving import load_model

    model = load_model(path, compile=False, safe_mode=True)  # imports what the file names
    _check_detector(model)
    return model


def _write_saved_model(model, target, image_size):
    import tensorflow as tf

    from keras_ba.data.augment import normalize

    height, width = image_size
    spec = tf.TensorSpec([None, height, width, 3], tf.float32, name="images")

    @tf.function(input_signature=[spec])
    def serve(images):
        x = normalize(images)
        detections = model.decode_predictions(model(x, training=False), x)
        detections = {CLASS_KEYS.get(k, k): v for k, v in detections.items()}
        return {
            "boxes": tf.cast(detections["boxes"], tf.float32),
            "classes": tf.cast(detections["classes"], tf.int32),
            "scores": tf.cast(detections["confidence"], tf.float32),
            "num_detections": tf.cast(detections["num_detections"], tf.int32),
        }

    archive = keras.export.ExportArchive()  # the endpoint tracks the variables it uses
    archive.add_endpoint("serving_default", serve)
    folder = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(target)))
    try:
        # no gradients are served: skip tracing them (a third of the time)
        options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
        archive.write_out(folder, options=options, verbose=False)
        os.replace(folder, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None):
    """`python -m keras_ba.cv.detection MODEL.keras TARGET [--image-size H W]`.

    The TensorFlow-backend half of `export_detector`.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m keras_ba.cv.detection")
    parser.add_argument("model_path")
    parser.add_argument("target")
    parser.add_argument("--image-size", type=int, nargs=2)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        print("error: set KERAS_BACKEND=tensorflow", file=sys.stderr)
        return 2
    try:
        export_detector(args.model_path, args.target, args.image_size)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
