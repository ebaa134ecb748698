"""keras_ba.cv: BA backbones in KerasHub's DeepLabV3 and keras-cv's YOLOv8.

Models are tiny (BA-ResNet with one basic block per stage, 64 px); the
training tests run in the TensorFlow pass only (the task models and the
metrics are the libraries', the same on every backend; tracing a detector's
train step is the costly part, so it is paid once). KerasHub's RetinaNet,
DeepLabV3 and ImageClassifier on every backend: tests/test_kerashub.py.
"""

import doctest
import importlib
import os

import keras
import numpy as np
import pytest
from conftest import BACKEND, shapes_only

keras_cv = pytest.importorskip("keras_cv")
keras_hub = pytest.importorskip("keras_hub")

from keras_ba import cv  # noqa: E402
from keras_ba.applications import (  # noqa: E402
    BAEfficientNetB0,
    BAMobileNetV3Large,
    BAMobileNetV3Small,
    BAResNet,
    BAResNet18,
    BAResNet50,
    preprocess_input,
)

SIZE = 64
# Detector training steps: mAP@0.5 reached 0.18-0.43 after 100 steps in different runs
# (TF training is not bitwise reproducible here), 0.57-0.91 after 200.
STEPS = 200
TF_ONLY = "training runs in the TensorFlow pass only (keras-cv task models and metrics are backend-independent)"


def built(builder, *args, **kwargs):
    """Shapes only where that is cheaper (JAX compiles every initializer);
    under PyTorch a functional model over uninitialized seed-generator
    variables (Dropout) cannot be built, and initializing costs little there."""
    if BACKEND == "torch":
        return builder(*args, **kwargs)
    return shapes_only(builder, *args, **kwargs)


def tiny_trunk(attention="bav1", include_top=False, **kwargs):
    kwargs.setdefault("input_shape", (SIZE, SIZE, 3))
    return BAResNet(
        [1, 1, 1, 1],
        [8, 16, 32, 64],
        block_type="basic",
        include_top=include_top,
        attention=attention,
        reduction=4,
        classes=3,
        **kwargs,
    )


def _randomize(model, seed=0):
    """Random BatchNorm statistics (the trainable weights are random already),
    so that a round trip that lost any variable shows."""
    _randomize_weights(model.non_trainable_weights, seed)


def _randomize_weights(weights, seed):
    rng = np.random.default_rng(seed)
    for weight in weights:
        if weight.path.endswith("moving_variance"):
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
        else:
            weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))


# === Backbone contract ===

# Channels per level: the families' stage tables (keras.applications /
# keras-hub), not read from keras_ba.
PYRAMIDS = {
    "resnet50_bav1": (BAResNet50, {}, [64, 256, 512, 1024, 2048]),
    "resnet18_se": (BAResNet18, {"attention": "se"}, [64, 64, 128, 256, 512]),
    "efficientnet_b0_bav2": (BAEfficientNetB0, {"attention": "bav2"}, [16, 24, 40, 112, 320]),
    "mobilenet_v3_small": (BAMobileNetV3Small, {}, [16, 16, 24, 48, 96]),
    "mobilenet_v3_large_none": (BAMobileNetV3Large, {"attention": None}, [16, 24, 40, 112, 160]),
}


@pytest.mark.parametrize("name", sorted(PYRAMIDS))
def test_pyramid_levels_have_strides_and_channels(name):
    builder, kwargs, channels = PYRAMIDS[name]
    model = built(builder, include_top=False, input_shape=(96, 64, 3), **kwargs)
    backbone = cv.BABackbone(model)
    assert sorted(backbone.pyramid_level_inputs) == ["P1", "P2", "P3", "P4", "P5"]
    for k, level in enumerate(["P1", "P2", "P3", "P4", "P5"], start=1):
        shape = model.get_layer(backbone.pyramid_level_inputs[level]).output.shape
        assert tuple(shape) == (None, 96 // 2**k, 64 // 2**k, channels[k - 1]), level
        assert (
            backbone.pyramid_outputs[level]
            is model.get_layer(backbone.pyramid_level_inputs[level]).output
        )
    assert backbone.output_shape == (None, 3, 2, channels[-1])


def test_pyramid_of_an_unsized_backbone_fits_any_size():
    backbone = cv.BABackbone(built(tiny_trunk, input_shape=None), levels=["P2", "P3", "P4", "P5"])
    features = keras.Model(backbone.inputs, backbone.pyramid_outputs)
    shapes = features.compute_output_shape((1, 96, 160, 3))
    for k in range(2, 6):
        assert tuple(shapes[f"P{k}"]) == (1, 96 // 2**k, 160 // 2**k, 8 * 2 ** (k - 2))


@pytest.fixture(scope="module")
def transferred(tmp_path_factory):
    """A saved classifier, a trunk loaded from it by name, a YOLOv8 on the trunk.

    Built once per backend pass (building is the costly part under JAX).
    """
    classifier = tiny_trunk(include_top=True)
    _randomize(classifier)  # BN statistics unlike a fresh model's
    path = str(tmp_path_factory.mktemp("transfer") / "classifier.keras")
    classifier.save(path)
    trunk = tiny_trunk(weights=path)  # the applications' by-name loading
    detector = cv.build_yolo_v8(trunk, 3, "center_xywh", confidence_threshold=0.0)
    return classifier, trunk, detector


def test_backbone_shares_the_classifier_weights_and_loads_them_by_name(transferred):
    classifier, trunk, detector = transferred
    shared = cv.BABackbone(classifier)  # wrapping makes no copy
    assert all(any(w is v for v in classifier.weights) for w in shared.weights)
    detector_weights = {id(w) for w in detector.weights}
    assert all(id(w) in detector_weights for w in trunk.weights)
    checked = 0
    for layer in detector.backbone.layers:
        for mine, theirs in zip(
            layer.weights, classifier.get_layer(layer.name).weights, strict=True
        ):
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs)
            )
            checked += 1
    assert checked == len(trunk.weights) > 0


def test_backbone_config_round_trip():
    backbone = cv.BABackbone(tiny_trunk(), levels=["P3", "P4", "P5"], name="trunk")
    config = backbone.get_config()
    assert config["levels"] == ["P3", "P4", "P5"] and config["name"] == "trunk"
    clone = cv.BABackbone.from_config(keras.saving.serialize_keras_object(backbone)["config"])
    assert clone.pyramid_level_inputs == backbone.pyramid_level_inputs
    assert clone.count_params() == backbone.count_params()


# === Detection ===


def _decode(model, images):
    """Decoded boxes without compiling a predict function (eager)."""
    outputs = model.decode_predictions(model(images, training=False), images)
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


NO_TORCH_NMS = (
    "keras-cv's NonMaxSuppression needs torchvision under PyTorch; PyPI's torchvision "
    "for torch 2.13 is a CUDA build that does not load against this CPU torch"
)


def _check_round_trip(model, tmp_path):
    images = preprocess_input(cv.make_digit_canvases(2, SIZE, seed=3)["images"])
    raw = {k: keras.ops.convert_to_numpy(v) for k, v in model(images, training=False).items()}
    assert all(np.all(np.isfinite(v)) for v in raw.values())
    decode = BACKEND != "torch"
    if decode:
        before = _decode(model, images)
        assert before["num_detections"].min() > 0
    path = str(tmp_path / "detector.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model) and isinstance(loaded.backbone, cv.BABackbone)
    assert loaded.bounding_box_format == model.bounding_box_format
    assert loaded.prediction_decoder.get_config() == model.prediction_decoder.get_config()
    for key, value in loaded(images, training=False).items():
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(value), raw[key])
    if decode:
        after = _decode(loaded, images)
        for key in ("boxes", "classes", "confidence", "num_detections"):
            np.testing.assert_array_equal(after[key], before[key])
    return path, images, raw, before if decode else None


def test_yolo_v8_keras_round_trip_gives_identical_boxes(transferred, tmp_path):
    """Raw outputs on every backend; decoded boxes where keras-cv's NMS runs
    (TensorFlow, JAX; under PyTorch it needs torchvision, see NO_TORCH_NMS)."""
    detector = transferred[2]
    head = [
        w
        for w in detector.non_trainable_weights
        if not any(w is v for v in detector.backbone.weights)
    ]
    _randomize_weights(head, seed=1)  # the backbone's came random from the classifier
    _check_round_trip(detector, tmp_path)


@pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="exports in-process under TensorFlow; the PyTorch pass covers the TensorFlow subprocess",
)
def test_export_serves_the_decoded_boxes(transferred, tmp_path):
    import tensorflow as tf

    detector = transferred[2]
    raw = cv.make_digit_canvases(2, SIZE, seed=4)["images"]
    expected = _decode(detector, preprocess_input(raw))
    target = tmp_path / "serving" / "1"
    assert cv.export_detector(detector, target) == str(target)
    served = tf.saved_model.load(str(target)).signatures["serving_default"](images=tf.constant(raw))
    served = {k: v.numpy() for k, v in served.items()}
    assert sorted(served) == ["boxes", "classes", "num_detections", "scores"]
    np.testing.assert_array_equal(served["num_detections"], expected["num_detections"])
    for index, count in enumerate(expected["num_detections"]):
        np.testing.assert_allclose(
            served["boxes"][index, :count], expected["boxes"][index, :count], atol=1e-3
        )
        np.testing.assert_allclose(
            served["scores"][index, :count], expected["confidence"][index, :count], atol=1e-5
        )
        np.testing.assert_array_equal(
            served["classes"][index, :count], expected["classes"][index, :count]
        )
    assert os.listdir(tmp_path / "serving") == ["1"]  # no temporary left


@pytest.mark.skipif(
    BACKEND != "torch",
    reason="exports from another backend through a TensorFlow subprocess: the PyTorch pass covers it",
)
def test_export_from_another_backend_runs_under_tensorflow(transferred, tmp_path):
    """Under PyTorch the detector cannot decode (NO_TORCH_NMS): the served
    detections are checked for what they must be."""
    import tensorflow as tf

    target = tmp_path / "serving" / "1"
    cv.export_detector(transferred[2], target)  # center_xywh boxes, threshold 0
    raw = cv.make_digit_canvases(2, SIZE, seed=4)["images"]
    served = {
        k: v.numpy()
        for k, v in tf.saved_model.load(str(target))
        .signatures["serving_default"](images=tf.constant(raw))
        .items()
    }
    assert served["boxes"].shape == (2, 100, 4)
    for index, count in enumerate(served["num_detections"]):
        assert 0 < count <= 84  # one box per anchor point at most (8x8 + 4x4 + 2x2)
        boxes, scores = served["boxes"][index, :count], served["scores"][index, :count]
        assert np.all(np.isfinite(boxes)) and np.all(boxes[:, 2:] > 0)  # center_xywh: sizes > 0
        assert np.all((scores > 0) & (scores < 1)) and np.all(np.diff(scores) <= 0)  # sorted
        assert np.all(
            (served["classes"][index, :count] >= 0) & (served["classes"][index, :count] < 3)
        )
        assert np.all(served["scores"][index, count:] == -1)  # padding
    assert os.listdir(tmp_path / "serving") == ["1"]


def test_export_refuses_bad_input_and_writes_nothing(tmp_path):
    target = tmp_path / "out" / "1"
    trunk = built(tiny_trunk, input_shape=None)
    with pytest.raises(ValueError, match="Expected a detector"):
        cv.export_detector(trunk, target)
    with pytest.raises(ValueError, match="No model file"):
        cv.export_detector(str(tmp_path / "missing.keras"), target)
    model = built(cv.build_yolo_v8, trunk, 2, "xyxy")
    with pytest.raises(ValueError, match="takes images of any size: pass `image_size"):
        cv.export_detector(model, target)
    assert not target.exists() and not any(p.name.startswith(".tmp") for p in tmp_path.rglob("*"))
    target.mkdir(parents=True)
    with pytest.raises(ValueError, match="already exists"):
        cv.export_detector(model, target, image_size=64)


@pytest.mark.skipif(BACKEND != "tensorflow", reason=TF_ONLY)
def test_training_raises_map50_clearly():
    fmt = "xywh"
    train = cv.make_digit_canvases(512, SIZE, digits=(0, 1), seed=0)
    val = cv.make_digit_canvases(64, SIZE, digits=(0, 1), seed=1)
    val_images, val_boxes = preprocess_input(val["images"]), cv.to_bounding_boxes(val, fmt)
    keras.utils.set_random_seed(0)
    model = cv.build_yolo_v8(tiny_trunk(), 2, fmt)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3, global_clipnorm=10.0),
        box_loss="ciou",
        classification_loss="binary_crossentropy",
    )
    start = cv.evaluate_map(model, val_images, val_boxes)[cv.MAP50]
    ds = cv.detection_dataset(
        train["images"],
        cv.to_bounding_boxes(train, fmt),
        fmt,
        batch_size=16,
        augment=True,
        shuffle=True,
    )
    model.fit(ds.repeat(), steps_per_epoch=STEPS, epochs=1, verbose=0)
    end = cv.evaluate_map(model, val_images, val_boxes)[cv.MAP50]
    assert end > start + 0.15 and end > 0.2, (start, end)


@pytest.mark.skipif(BACKEND != "tensorflow", reason=TF_ONLY)
def test_segmentation_beats_the_all_background_baseline():
    train = cv.make_digit_canvases(256, SIZE, digits=(0, 1), seed=0)
    val = cv.make_digit_canvases(64, SIZE, digits=(0, 1), seed=1)
    keras.utils.set_random_seed(0)
    model = cv.build_deeplab_v3_plus(tiny_trunk(), 3, dilation_rates=(1, 2))
    assert isinstance(model, keras_hub.models.DeepLabV3ImageSegmenter)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=[]
    )
    ds = cv.segmentation_dataset(
        train["images"], train["masks"], batch_size=16, flip=True, shuffle=True
    )
    model.fit(ds.repeat(), steps_per_epoch=60, epochs=1, verbose=0)
    baseline = cv.background_mean_iou(val["masks"], 3)
    score = cv.evaluate_mean_iou(model, preprocess_input(val["images"]), val["masks"], 3)
    # independent check of the metric: NumPy IoU per class from the argmax
    predicted = np.argmax(model.predict(preprocess_input(val["images"]), verbose=0), axis=-1)
    ious = [
        np.sum((predicted == c) & (val["masks"] == c))
        / np.sum((predicted == c) | (val["masks"] == c))
        for c in range(3)
    ]
    np.testing.assert_allclose(score, np.mean(ious), rtol=1e-5)
    assert score > baseline + 0.1, (baseline, score)


# === Data ===


def test_digit_canvases_are_deterministic_and_consistent():
    data = cv.make_digit_canvases(12, SIZE, digits=(3, 5, 8), max_objects=3, seed=7)
    again = cv.make_digit_canvases(12, SIZE, digits=(3, 5, 8), max_objects=3, seed=7)
    other = cv.make_digit_canvases(12, SIZE, digits=(3, 5, 8), max_objects=3, seed=8)
    for key in data:
        np.testing.assert_array_equal(data[key], again[key])
    assert not np.array_equal(data["images"], other["images"])
    assert data["images"].min() >= 0 and data["images"].max() <= 255
    for index in range(12):
        real = data["classes"][index] >= 0
        assert 1 <= real.sum() <= 3
        inside = np.zeros((SIZE, SIZE), bool)
        for (x1, y1, x2, y2), label in zip(
            data["boxes"][index][real], data["classes"][index][real], strict=True
        ):
            assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE
            window = data["masks"][index, int(y1) : int(y2), int(x1) : int(x2)]
            assert np.isin(label + 1, window)  # the digit's ink is in its box
            inside[int(y1) : int(y2), int(x1) : int(x2)] = True
        assert not np.any(data["masks"][index][~inside])  # and nowhere else


def test_detection_dataset_delivers_boxes_in_the_chosen_format():
    data = cv.make_digit_canvases(4, SIZE, seed=2)
    x1, y1, x2, y2 = np.moveaxis(data["boxes"], -1, 0)
    expected = np.stack(
        [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1
    )  # center_xywh by hand
    expected[data["classes"] < 0] = -1
    boxes = cv.to_bounding_boxes(data, "center_xywh")
    images, batch = next(
        iter(cv.detection_dataset(data["images"], boxes, "center_xywh", batch_size=4))
    )
    np.testing.assert_allclose(batch["boxes"].numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(images.numpy(), preprocess_input(data["images"]), atol=1e-4)
    _, augmented = next(
        iter(
            cv.detection_dataset(
                data["images"], boxes, "center_xywh", batch_size=4, augment=True, flip=True
            )
        )
    )
    real = augmented["classes"].numpy() >= 0
    assert real.any()
    xyxy = keras.ops.convert_to_numpy(
        keras_cv.bounding_box.convert_format(
            augmented["boxes"].numpy(), source="center_xywh", target="xyxy"
        )
    )[real]
    assert np.all(xyxy[:, :2] >= -1e-3) and np.all(xyxy[:, 2:] <= SIZE + 1e-3)


# === Bad input ===


def test_bad_backbones_are_clear_errors():
    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has no pyramid levels"):
        cv.BABackbone(plain)
    trunk = built(tiny_trunk)
    with pytest.raises(
        ValueError, match=r"no pyramid level 'P6'; it has \['P1', 'P2', 'P3', 'P4', 'P5'\]"
    ):
        cv.BABackbone(trunk, levels=["P5", "P6"])
    small = cv.BABackbone(trunk, levels=["P4", "P5"])
    with pytest.raises(ValueError, match="has no pyramid level 'P3'"):
        cv.build_retinanet(small, 2, "xyxy")
    with pytest.raises(cv.PyramidLevelError, match="has no pyramid level 'P3'"):
        keras_cv.models.YOLOV8Detector(backbone=small, num_classes=2, bounding_box_format="xyxy")
    with pytest.raises(ValueError, match="has no pyramid level 'P2'"):
        cv.build_deeplab_v3_plus(small, 3)
    if BACKEND == "tensorflow":  # shapes only: channels_first convs do not run on TF's CPU
        with pytest.raises(ValueError, match="channels_first"):
            cv.BABackbone(
                built(tiny_trunk, data_format="channels_first", input_shape=(3, SIZE, SIZE))
            )


def test_bad_boxes_are_clear_errors():
    data = cv.make_digit_canvases(4, SIZE, seed=5)
    boxes = cv.to_bounding_boxes(data, "xyxy")
    with pytest.raises(ValueError, match="invalid value for `bounding_box_format`"):
        cv.detection_dataset(data["images"], boxes, "xyzw")
    with pytest.raises(
        ValueError, match=r"do not fit bounding_box_format='rel_xyxy'.*another format"
    ):
        cv.detection_dataset(data["images"], boxes, "rel_xyxy")  # pixels given as relative
    xywh = cv.to_bounding_boxes(data, "xywh")
    with pytest.raises(ValueError, match="do not fit bounding_box_format='xyxy'"):
        cv.detection_dataset(data["images"], xywh, "xyxy")  # width < x: inside out
    with pytest.raises(ValueError, match="4 images but boxes for 3"):
        cv.detection_dataset(data["images"], {k: v[:3] for k, v in boxes.items()}, "xyxy")
    with pytest.raises(ValueError, match="Classes must have shape"):
        cv.detection_dataset(
            data["images"], {"boxes": boxes["boxes"], "classes": boxes["classes"][:, :1]}, "xyxy"
        )
    with pytest.raises(ValueError, match="`masks` must have shape"):
        cv.segmentation_dataset(data["images"], data["masks"][:2])
    with pytest.raises(ValueError, match="`num_classes`"):
        cv.build_yolo_v8(built(tiny_trunk), 0, "xyxy")


# === keras-hub ===


@pytest.mark.skipif(
    BACKEND != "torch",
    reason="keras-hub's task graphs are the same on every backend: the PyTorch pass (the cheapest to build in) covers them",
)
def test_keras_hub_task_models_take_the_backbone():
    """keras-hub reads `pyramid_outputs` (tensors). Symbolic shapes only here;
    fit and .keras round trips of these models are in the closing note."""
    keras_hub = pytest.importorskip("keras_hub")
    backbone = cv.BABackbone(built(tiny_trunk, input_shape=None))
    segmenter = keras_hub.models.DeepLabV3ImageSegmenter(
        backbone=keras_hub.models.DeepLabV3Backbone(
            image_encoder=backbone,
            spatial_pyramid_pooling_key="P5",
            upsampling_size=8,
            dilation_rates=[1, 2],
            low_level_feature_key="P2",
        ),
        num_classes=3,
    )
    retina = keras_hub.models.RetinaNetBackbone(
        image_encoder=backbone, min_level=3, max_level=5, use_p5=False
    )
    classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=3)
    images = keras.KerasTensor((2, SIZE, SIZE, 3))
    assert tuple(segmenter(images).shape) == (2, SIZE, SIZE, 3)
    assert {k: tuple(v.shape)[1:3] for k, v in retina(images).items()} == {
        "P3": (8, 8),
        "P4": (4, 4),
        "P5": (2, 2),
    }
    assert tuple(classifier(images).shape) == (2, 3)


# === Docs ===


def test_docstring_examples():
    for module in ("", ".datasets", ".backbone", ".detection", ".detectors", ".segmentation"):
        result = doctest.testmod(
            importlib.import_module(f"keras_ba.cv{module}"),
            optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
        )
        assert result.failed == 0, f"keras_ba.cv{module}"
