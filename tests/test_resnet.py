"""BA-ResNet: parameter counts, shapes, backbone contract, training, weights, errors.

Full-size models are built shapes-only (`conftest.shapes_only`); everything
that runs data uses tiny configurations.
"""

import keras
import numpy as np
import pytest
from conftest import (
    BACKEND,
    SHAPES_PASS,
    forward,
    official_keys,
    only_in,
    shapes_only,
    trainable_count,
)
from model_contract import (
    CUSTOM_NAME,
    PooledGate,
    check_loads_under_other_backends,
    check_pyramid_shapes,
    randomize_weights,
    run_backbone_contract,
    to_numpy,
)

from keras_ba import applications
from keras_ba.applications import BAResNet, BAResNetBackbone, preprocess_input

TINY = dict(
    stackwise_num_blocks=[1, 1, 1, 1],
    stackwise_num_filters=[8, 16, 32, 64],
    block_type="basic",
    stem="cifar",
    stem_filters=8,
    reduction=4,
)


def tiny_resnet(**kwargs):
    return BAResNet(**{**TINY, "input_shape": (16, 16, 3), "classes": 10, **kwargs})


def digits_images(size=16):
    """scikit-learn's digits as RGB images, upscaled and preprocessed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype("float32") * (255.0 / 16.0)
    images = np.kron(images, np.ones((size // 8, size // 8), "float32"))
    images = np.repeat(images[..., None], 3, axis=-1)
    return preprocess_input(images), digits.target.astype("int32")


# === Parameter counts: exactly the authors' models ===

OFFICIAL = [
    (f"{prefix}_resnet{depth}", depth, attention)
    for prefix, attention in (("bav1", "bav1"), ("bav2", "bav2"), ("se", "se"))
    for depth in (18, 34, 50, 101, 152)
    if not (prefix == "se" and depth == 152)
]


@SHAPES_PASS
@pytest.mark.large
@pytest.mark.parametrize("key,depth,attention", OFFICIAL, ids=[o[0] for o in OFFICIAL])
def test_trainable_parameters_equal_official(key, depth, attention):
    model = shapes_only(getattr(applications, f"BAResNet{depth}"), attention=attention)
    assert trainable_count(model) == official_keys(key)["total_params"]


@SHAPES_PASS
def test_paper_level_numbers_for_resnet50():
    # SPEC.md: BAv1 28,706,376; BAv2 28,702,664; SE 28,071,976.
    counts = {
        a: trainable_count(shapes_only(applications.BAResNet50, attention=a))
        for a in ("bav1", "bav2", "se")
    }
    assert counts == {"bav1": 28_706_376, "bav2": 28_702_664, "se": 28_071_976}


@SHAPES_PASS
def test_plain_resnet50_matches_keras_applications():
    ours = shapes_only(applications.BAResNet50, attention=None)
    theirs = shapes_only(keras.applications.ResNet50, weights=None)
    # Same trainable weights except that Keras' ResNet50 (v1) has conv biases.
    keras_biases = sum(
        int(np.prod(layer.bias.shape))
        for layer in theirs.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias
    )
    assert trainable_count(ours) == trainable_count(theirs) - keras_biases


# === Structure ===


def test_names_are_stable_and_torch_safe():
    model = shapes_only(applications.BAResNet50, classes=10, input_shape=(64, 64, 3))
    names = {layer.name for layer in model.layers}
    expected = {
        "images",
        "conv1_pad",
        "conv1_conv",
        "conv1_bn",
        "conv1_relu",
        "pool1_pad",
        "pool1_pool",
        "conv2_block1_1_conv",
        "conv2_block1_2_pad",
        "conv2_block1_3_bn",
        "conv2_block1_0_conv",
        "conv2_block1_ba",
        "conv2_block1_add",
        "conv2_block1_out",
        "conv5_block3_ba",
        "avg_pool",
        "predictions",
    }
    assert expected <= names
    assert sum(name.endswith("_ba") for name in names) == 16
    assert not any("." in w.path for w in model.weights)


def test_stride_sits_on_the_3x3_conv():
    model = shapes_only(applications.BAResNet50, classes=10, input_shape=(64, 64, 3))
    assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_2_conv").padding == "valid"
    assert model.get_layer("conv3_block1_0_conv").strides == (2, 2)


@pytest.mark.parametrize(
    "include_top,pooling,expected",
    [
        (True, None, (None, 10)),
        (False, None, (None, 2, 2, 64)),
        (False, "avg", (None, 64)),
        (False, "max", (None, 64)),
    ],
)
def test_output_shapes(include_top, pooling, expected):
    model = tiny_resnet(include_top=include_top, pooling=pooling)
    assert model.output_shape == expected
    y = forward(model, np.zeros((2, 16, 16, 3), "float32"))
    assert y.shape == (2,) + expected[1:]


@pytest.mark.parametrize(
    "attention,suffix", [("bav1", "_ba"), ("bav2", "_ba"), ("se", "_se"), (None, None)]
)
def test_attention_choice(attention, suffix):
    model = shapes_only(tiny_resnet, attention=attention)
    attention_layers = [layer.name for layer in model.layers if layer.name.endswith(("_ba", "_se"))]
    if suffix is None:
        assert attention_layers == []
    else:
        assert len(attention_layers) == 4 and all(n.endswith(suffix) for n in attention_layers)


def test_imagenet_stem_and_bottleneck_shapes():
    model = shapes_only(
        BAResNet, [1, 1, 1, 1], [4, 8, 16, 32], stem_filters=8, input_shape=(64, 64, 3), classes=5
    )
    assert model.get_layer("pool1_pool").output.shape == (None, 16, 16, 8)
    assert model.get_layer("conv5_block1_out").output.shape == (None, 2, 2, 128)


def test_fully_convolutional_input_and_input_tensor():
    model = BAResNet(**TINY, classes=3)
    assert model.input_shape == (None, None, None, 3)
    assert model.input.name == "images" or model.inputs[0].name == "images"
    y = forward(model, np.zeros((1, 24, 40, 3), "float32"))
    assert y.shape == (1, 3)
    tensor = keras.Input((32, 32, 3))
    model = BAResNet(**TINY, classes=3, input_tensor=tensor)
    assert model.inputs[0] is tensor


def test_channels_first_matches_channels_last():
    if BACKEND == "tensorflow":
        pytest.skip("TensorFlow has no channels_first convolution on CPU")
    last = tiny_resnet(attention="bav2")
    first = tiny_resnet(attention="bav2", data_format="channels_first", input_shape=(3, 16, 16))
    first.set_weights(last.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(first(np.transpose(x, (0, 3, 1, 2)))), to_numpy(last(x)), rtol=1e-4, atol=1e-5
    )


def test_preprocess_input_uses_imagenet_mean_std():
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 4, 4, 3)).astype("float32")
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    expected = (x - mean) / std
    np.testing.assert_allclose(preprocess_input(x), expected, rtol=1e-5, atol=1e-5)
    first = preprocess_input(np.transpose(x, (0, 3, 1, 2)), data_format="channels_first")
    np.testing.assert_allclose(np.transpose(first, (0, 2, 3, 1)), expected, rtol=1e-5, atol=1e-5)
    tensor = preprocess_input(keras.ops.convert_to_tensor(x))
    np.testing.assert_allclose(to_numpy(tensor), expected, rtol=1e-5, atol=1e-5)


# === Backbone contract ===

# (init kwargs, input side, output shape, pyramid shapes); one configuration
# per attention kind that only the contract trains.
CONTRACT_CONFIGS = {
    # A user's Layer subclass, basic blocks, CIFAR stem: P0..P3.
    "custom_class_basic_cifar": (
        dict(TINY, attention=PooledGate),
        16,
        (2, 2, 64),
        {"P0": (16, 16, 8), "P1": (8, 8, 16), "P2": (4, 4, 32), "P3": (2, 2, 64)},
    ),
    # A registered name (BAv1 with swish), bottlenecks, ImageNet stem: P1..P4.
    "registered_name_bottleneck": (
        dict(
            stackwise_num_blocks=[1, 1, 1],
            stackwise_num_filters=[4, 8, 8],
            stem_filters=8,
            reduction=4,
            attention=CUSTOM_NAME,
        ),
        32,
        (2, 2, 32),
        {"P1": (16, 16, 8), "P2": (8, 8, 16), "P3": (4, 4, 32), "P4": (2, 2, 32)},
    ),
}


@pytest.mark.parametrize("config", list(CONTRACT_CONFIGS))
def test_backbone_contract(config, tmp_path):
    kwargs, size, output_shape, pyramid = CONTRACT_CONFIGS[config]
    jit_compile = config == "registered_name_bottleneck"  # one XLA compile per family
    images = np.random.default_rng(0).normal(size=(4, size, size, 3)).astype("float32")
    backbone, _ = run_backbone_contract(
        BAResNetBackbone,
        dict(kwargs, image_shape=(size, size, 3)),
        images,
        output_shape,
        pyramid,
        tmp_path,
        jit_compile=jit_compile,
    )
    attention = [
        layer for layer in backbone.layers if layer.name.endswith(("_attn", f"_{CUSTOM_NAME}"))
    ]
    assert len(attention) == sum(kwargs["stackwise_num_blocks"])


def test_custom_attention_in_the_classifier():
    model = shapes_only(tiny_resnet, attention=PooledGate)
    layer = model.get_layer("conv2_block1_attn")
    assert isinstance(layer, PooledGate) and layer.reduction == 4
    assert [t.name for t in layer.input] == [
        model.get_layer("conv2_block1_1_relu").output.name,
        model.get_layer("conv2_block1_2_bn").output.name,
    ]
    named = shapes_only(tiny_resnet, attention=CUSTOM_NAME)
    assert named.get_layer(f"conv2_block1_{CUSTOM_NAME}").hidden_activation == "swish"


def test_pyramid_outputs_at_two_sizes_and_both_data_formats():
    def build(image_shape, data_format):
        return BAResNetBackbone(
            [1, 1, 1, 1], [4, 8, 8, 16], block_type="basic", stem_filters=8, reduction=4,
            image_shape=image_shape, data_format=data_format,
        )  # fmt: skip

    def expected(size):  # ImageNet stem: P1 = conv1, P2..P5 = the stages
        widths = {"P1": 8, "P2": 4, "P3": 8, "P4": 8, "P5": 16}
        return {f"P{k}": (size >> k, size >> k, widths[f"P{k}"]) for k in range(1, 6)}

    check_pyramid_shapes(build, expected)


def test_classifier_holds_the_backbone_layers():
    """The classifier is flat: the backbone's layers themselves plus a head."""
    from keras_ba.applications import classifier

    backbone = BAResNetBackbone(**TINY, image_shape=(16, 16, 3))
    model = classifier.build_classifier(
        backbone,
        include_top=True,
        weights=None,
        pooling=None,
        classes=10,
        classifier_activation="softmax",
        name="ba_resnet",
    )
    for layer in backbone.layers:
        assert model.get_layer(layer.name) is layer
    backbone_names = [layer.name for layer in backbone.layers]
    assert [layer.name for layer in model.layers] == backbone_names + ["avg_pool", "predictions"]
    assert [layer.name for layer in shapes_only(tiny_resnet).layers] == (
        [layer.name for layer in model.layers]
    )


# === Training on a real task ===


@only_in(
    "tensorflow",
    "torch",
    reason="the JAX pass learns digits through keras-ba train (test_workflow.py: accuracy "
    "above chance), this fit compiles for 20 s there",
)
def test_fit_reduces_loss_on_digits():
    images, labels = digits_images()
    model = tiny_resnet(attention="bav1")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(images[:640], labels[:640], epochs=3, batch_size=64, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0]
    _, accuracy = model.evaluate(images[1000:1400], labels[1000:1400], verbose=0)
    assert accuracy > 0.3  # chance is 0.1


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_builds_and_trains_under_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    model = tiny_resnet(attention="bav2")
    ba = model.get_layer("conv2_block1_ba")
    assert ba.compute_dtype == policy.split("_")[1]
    assert model.get_layer("predictions").compute_dtype == "float32"
    images, labels = digits_images()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(images[:64], labels[:64], epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# === Saving and loading ===


@pytest.mark.slow
def test_keras_file_loads_under_another_backend(tmp_path):
    """Saved here, loaded in a fresh process (only `import keras_ba`) under
    another backend, then fit. The families share the work in a cycle, so
    that every backend saves once and loads once: tensorflow -> torch here,
    jax -> tensorflow (EfficientNet), torch -> jax (MobileNetV3)."""
    if BACKEND != "tensorflow":
        pytest.skip("budget: BA-ResNet files are loaded across backends in the tensorflow pass")
    model = tiny_resnet(attention="bav1")
    randomize_weights(model)  # non-trivial BatchNorm statistics too
    images, _ = digits_images()
    check_loads_under_other_backends(model, images[:8], tmp_path, fit=True, targets=["torch"])


def test_weights_argument_loads_keras_and_weights_h5(tmp_path):
    source = tiny_resnet(attention="bav2")
    randomize_weights(source)  # BatchNorm statistics too
    images, _ = digits_images()
    expected = forward(source, images[:4])
    source.save(tmp_path / "full.keras")
    source.save_weights(tmp_path / "full.weights.h5")
    for name in ("full.keras", "full.weights.h5"):
        loaded = tiny_resnet(attention="bav2", weights=str(tmp_path / name))
        np.testing.assert_allclose(forward(loaded, images[:4]), expected, atol=1e-6)
    # Transfer learning: no top, features equal the source's trunk.
    trunk = tiny_resnet(
        attention="bav2", include_top=False, pooling="avg", weights=str(tmp_path / "full.keras")
    )
    source_trunk = keras.Model(source.input, source.get_layer("avg_pool").output)
    np.testing.assert_allclose(
        to_numpy(trunk(images[:4], training=False)),
        to_numpy(source_trunk(images[:4], training=False)),
        atol=1e-6,
    )


def test_weights_of_another_class_count_are_refused(tmp_path):
    tiny_resnet(classes=10).save(tmp_path / "ten.keras")
    tiny_resnet(classes=10).save_weights(tmp_path / "ten.weights.h5")
    for name in ("ten.keras", "ten.weights.h5"):
        with pytest.raises(ValueError, match="classifier for 10 classes.*classes=7"):
            tiny_resnet(classes=7, weights=str(tmp_path / name))
    # include_top=False ignores the head and loads.
    tiny_resnet(include_top=False, weights=str(tmp_path / "ten.keras"))


def test_weights_of_another_architecture_are_refused(tmp_path):
    tiny_resnet(attention="bav1").save(tmp_path / "v1.keras")
    model = tiny_resnet(attention="bav2")
    before = [to_numpy(w).copy() for w in model.weights]
    with pytest.raises(ValueError, match="does not fit this architecture"):
        tiny_resnet(attention="bav2", weights=str(tmp_path / "v1.keras"))
    assert all(np.array_equal(to_numpy(w), b) for w, b in zip(model.weights, before, strict=True))


# === Bad input ===


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"attention": "cbam"}, "`attention`"),
        ({"pooling": "sum", "include_top": False}, "`pooling`"),
        ({"classes": 0}, "`classes`"),
        ({"block_type": "wide"}, "`block_type`"),
        ({"stem": "tiny"}, "`stem`"),
        ({"input_shape": (4, 4, 3)}, "too small for the 'cifar' stem"),
        ({"input_shape": (16, 16)}, "`input_shape`"),
        ({"stackwise_num_filters": [8, 16]}, "stackwise_num_filters"),
        ({"stackwise_num_blocks": [1, 0, 1, 1]}, "stackwise_num_blocks"),
        ({"reduction": 100}, "larger than the"),
        ({"weights": "imagenet"}, "does not exist"),
        ({"weights": 3}, "`weights`"),
        ({"include_top": "yes"}, "`include_top`"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_resnet(**kwargs)


def test_imagenet_stem_needs_32_pixels():
    with pytest.raises(ValueError, match="too small for the 'imagenet' stem.*at least 32"):
        applications.BAResNet18(input_shape=(16, 16, 3))


def test_unknown_model_name():
    with pytest.raises(ValueError, match="Unknown model name 'ba_resnet51'.*ba_resnet50"):
        applications.get_model_builder("ba_resnet51")
