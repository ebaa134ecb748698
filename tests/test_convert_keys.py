"""keras_ba.convert key maps against the authors' full-size state dicts.

`reference/official_keys/*.json` lists every key and shape of the official
models; each must map to exactly one Keras weight of the right shape, and
every Keras weight must be covered. The layout transforms are checked
numerically against PyTorch's own conv/linear functions. Full-size models are
built without computing initial values (`shapes_only`).
"""

import json

import keras
import numpy as np
import pytest
from conftest import REFERENCE_DIR, official_keys, only_in, shapes_only, trainable_count
from keras import layers

from keras_ba import applications
from keras_ba.convert import build_key_map, load_torch_weights, transforms
from keras_ba.layers import BridgeAttention, SqueezeExcite

pytestmark = only_in(
    "torch",
    reason="key maps are names and shapes, the same on every backend: the PyTorch pass",
)

# The other architectures the authors released: layout file -> builder.
OTHER_LAYOUTS = {
    "bav1_resnext50": applications.BAResNeXt50_32x4d,
    "bav1_resnext101": applications.BAResNeXt101_32x4d,
    "bav1_mobilenetv3_small": applications.BAMobileNetV3Small,
    "bav1_mobilenetv3_large": applications.BAMobileNetV3Large,
    "bav1_efficientnet_small": lambda: applications.BAEfficientNet(0.5, 0.5, 64, classes=10),
}

RESNETS = [
    f"{attention}_resnet{depth}"
    for attention in ("bav1", "bav2", "se")
    for depth in (18, 34, 50, 101, 152)
    if (REFERENCE_DIR / "official_keys" / f"{attention}_resnet{depth}.json").exists()
]


def _official_shapes(reference):
    return {
        key: tuple(shape)
        for key, shape in reference["state_dict"]
        if not key.endswith("num_batches_tracked")
    }


def _mapped_shapes(key_map):
    return {
        key: tuple(target.transform.torch_shape(tuple(target.variable.shape)))
        for key, target in key_map.targets.items()
    }


def assert_key_map_matches(model, reference, unused=()):
    """`unused`: official keys the converter must skip by name."""
    key_map = build_key_map(model)
    official, mapped = _official_shapes(reference), _mapped_shapes(key_map)
    assert sorted(k for k in official if key_map.ignore_reason(k)) == sorted(unused)
    official = {k: v for k, v in official.items() if k not in unused}
    assert sorted(set(official) - set(mapped)) == [], "official keys without a Keras weight"
    assert sorted(set(mapped) - set(official)) == [], "Keras keys absent from the official model"
    wrong = {k: (official[k], mapped[k]) for k in official if official[k] != mapped[k]}
    assert wrong == {}, "shape mismatches (official, Keras)"
    variables = [id(target.variable) for target in key_map.targets.values()]
    assert len(set(variables)) == len(variables), "a Keras weight is mapped twice"
    assert set(variables) == {id(w) for w in model.weights}, "Keras weights not covered"
    return key_map


def _build_resnet(name):
    attention, depth = name.split("_resnet")
    builder = getattr(applications, f"BAResNet{depth}")
    # Only names and shapes matter here: skip the random initialisation.
    with keras.StatelessScope(initialize_variables=False):
        return builder(attention=attention)


@pytest.mark.large
@pytest.mark.parametrize("name", RESNETS)
def test_official_resnet_layout_is_covered(name):
    model = _build_resnet(name)
    reference = official_keys(name)
    assert_key_map_matches(model, reference)
    assert trainable_count(model) == reference["total_params"]


@pytest.mark.large
def test_official_efficientnet_b0_layout_is_covered():
    if not hasattr(applications, "BAEfficientNetB0"):
        pytest.skip("keras_ba.applications.BAEfficientNetB0 is not available yet")
    with keras.StatelessScope(initialize_variables=False):
        model = applications.BAEfficientNetB0(classes=1000)
    reference = official_keys("bav1_efficientnet_b0")
    assert_key_map_matches(model, reference)
    assert trainable_count(model) == reference["total_params"]


def _resnext_gate_keys(reference):
    """BA_resnext.py's `gate{s}` of each stage and the `Gate` of each block."""
    return [k for k, _ in reference["state_dict"] if k.startswith("gate") or ".Gate." in k]


@pytest.mark.large
@pytest.mark.parametrize("name", sorted(OTHER_LAYOUTS))
def test_official_layout_is_covered(name):
    model = shapes_only(OTHER_LAYOUTS[name])
    reference = official_keys(name)
    gates = _resnext_gate_keys(reference)
    key_map = assert_key_map_matches(model, reference, unused=gates)
    # PyTorch counts a shared parameter once: every block's `Gate` is its
    # stage's `gate{s}` (same shape), so only `gate{1..4}` add to the total.
    shapes = dict(_official_shapes(reference))
    stage_gates = [k for k in gates if k.startswith("gate")]
    for key in gates:
        stage = key[len("layer")] if key.startswith("layer") else None
        assert stage is None or shapes[key] == shapes[f"gate{stage}.0.weight"]
    unused_params = sum(int(np.prod(shapes[k])) for k in stage_gates)
    assert trainable_count(model) + unused_params == reference["total_params"]
    if name.startswith("bav1_resnext"):
        assert len(stage_gates) == 4 and unused_params == 43_520
    else:
        assert gates == []
    assert {t.role for t in key_map.targets.values()} == {"trunk", "attention", "head"}


def test_resnext_gate_keys_are_skipped_and_reported():
    """A BA-ResNeXt checkpoint loads with its unused gates named in the report."""
    model = applications.BAResNet(
        [1, 1, 1, 1], [16, 16, 16, 16], groups=4, width_per_group=16, stem_filters=8,
        classes=3, input_shape=(32, 32, 3),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    state = {
        key: rng.standard_normal(target.transform.torch_shape(tuple(target.variable.shape)))
        for key, target in build_key_map(model).targets.items()
    }
    gates = {"gate1.0.weight": (2, 4), "layer1.0.Gate.0.weight": (2, 4)}
    state.update({key: np.zeros(shape, "float32") for key, shape in gates.items()})
    report = load_torch_weights(model, state)
    assert report.num_mapped == len(state) - 2 == len(model.weights)
    assert sorted(report.skipped) == sorted(gates)
    assert any("never uses" in note and "gate1.0.weight" in note for note in report.notes)
    assert "skipped 2 entries" in str(report)


@pytest.mark.large
def test_full_size_load_assigns_every_weight():
    """A random official-shaped state dict fills every weight, transposed."""
    reference = official_keys("bav2_resnet18")
    rng = np.random.default_rng(0)
    state = {
        key: rng.standard_normal(shape).astype("float32")
        for key, shape in _official_shapes(reference).items()
    }
    model = applications.BAResNet18(attention="bav2")
    report = load_torch_weights(model, state)
    assert report.num_mapped == len(state) == len(model.weights)
    for key, target in build_key_map(model).targets.items():
        expected = target.transform(state[key], target.variable.shape)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(target.variable), expected)


# === EfficientNet naming, on the agreed layer names ===


def _efficientnet_head_blocks():
    """Stem and the first two blocks of B0, named like keras.applications.

    block1a: depthwise 3x3 (32) + SE with bias (8) + project (16), no
    expansion; block2a: expand 16->96, depthwise, BAv1 (reduction 6),
    project to 24.
    """

    def bn(name):
        return layers.BatchNormalization(epsilon=1e-3, name=name)

    x = inputs = keras.Input((32, 32, 3))
    x = bn("stem_bn")(layers.Conv2D(32, 3, 2, use_bias=False, name="stem_conv")(x))
    d = bn("block1a_bn")(
        layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="block1a_dwconv")(x)
    )
    s = SqueezeExcite(
        squeeze_channels=8, use_bias=True, hidden_activation="swish", name="block1a_se"
    )(d)
    x = bn("block1a_project_bn")(
        layers.Conv2D(16, 1, use_bias=False, name="block1a_project_conv")(s)
    )
    e = bn("block2a_expand_bn")(layers.Conv2D(96, 1, use_bias=False, name="block2a_expand_conv")(x))
    d = bn("block2a_bn")(layers.DepthwiseConv2D(3, 2, use_bias=False, name="block2a_dwconv")(e))
    a = BridgeAttention("v1", reduction=6, hidden_activation="swish", name="block2a_ba")([e, d])
    x = bn("block2a_project_bn")(
        layers.Conv2D(24, 1, use_bias=False, name="block2a_project_conv")(a)
    )
    return keras.Model(inputs, x)


def test_efficientnet_names_map_to_official_blocks():
    with keras.StatelessScope(initialize_variables=False):
        model = _efficientnet_head_blocks()
    official = _official_shapes(official_keys("bav1_efficientnet_b0"))
    wanted = ("_conv_stem.", "_bn0.", "_blocks.0.", "_blocks.1.")
    official = {k: v for k, v in official.items() if k.startswith(wanted)}
    key_map = build_key_map(model, family="efficientnet")
    assert _mapped_shapes(key_map) == official
    assert key_map.targets["_blocks.0.att.0.weight"].transform is transforms.POINTWISE_TO_DENSE
    assert key_map.targets["_blocks.1._depthwise_conv.weight"].transform is transforms.DEPTHWISE


def test_efficientnet_unknown_layer_is_reported():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 1, name="stem_conv")(inputs)
    x = layers.Conv2D(4, 1, name="block1a_mystery_conv")(x)
    with pytest.raises(ValueError, match="block1a_mystery_conv"):
        build_key_map(keras.Model(inputs, x))


# === Layout transforms against PyTorch's own ops ===


@pytest.fixture(scope="module")
def torch_functional():
    pytest.importorskip("torch")
    import torch.nn.functional as functional

    return functional


def _keras_out(layer, x_nchw):
    return keras.ops.convert_to_numpy(layer(x_nchw.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)


def _set_kernel(layer, x_nchw, kernel, transform):
    layer.build((None,) + x_nchw.shape[2:] + x_nchw.shape[1:2])
    layer.kernel.assign(transform(kernel, layer.kernel.shape))


def test_grouped_conv_transform_matches_torch(torch_functional):
    import torch

    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 9, 11)).astype("float32")
    weight = rng.standard_normal((4, 3, 3, 5)).astype("float32")  # 2 groups, 3x5 kernel
    layer = layers.Conv2D(4, (3, 5), groups=2, use_bias=False)
    _set_kernel(layer, x, weight, transforms.CONV)
    expected = torch_functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), groups=2)
    np.testing.assert_allclose(_keras_out(layer, x), expected.numpy(), atol=1e-5)


def test_depthwise_transform_matches_torch(torch_functional):
    import torch

    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 9, 11)).astype("float32")
    weight = rng.standard_normal((6, 1, 3, 5)).astype("float32")  # multiplier 2
    layer = layers.DepthwiseConv2D((3, 5), depth_multiplier=2, use_bias=False)
    _set_kernel(layer, x, weight, transforms.DEPTHWISE)
    expected = torch_functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), groups=3)
    np.testing.assert_allclose(_keras_out(layer, x), expected.numpy(), atol=1e-5)


def test_linear_to_pointwise_transform_matches_torch(torch_functional):
    """MobileNetV3's head Linear (`classifier.0`) as Keras' 1x1 `conv_2`."""
    import torch

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 7)).astype("float32")
    weight = rng.standard_normal((5, 7)).astype("float32")
    layer = layers.Conv2D(5, 1, use_bias=False)
    layer.build((None, 1, 1, 7))
    layer.kernel.assign(transforms.LINEAR_TO_POINTWISE(weight, layer.kernel.shape))
    expected = torch_functional.linear(torch.from_numpy(x), torch.from_numpy(weight))
    output = keras.ops.convert_to_numpy(layer(x[:, None, None, :]))[:, 0, 0, :]
    np.testing.assert_allclose(output, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("transform", [transforms.LINEAR, transforms.POINTWISE_TO_DENSE])
def test_dense_transforms_match_torch(torch_functional, transform):
    import torch

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7)).astype("float32")
    weight = rng.standard_normal((5, 7)).astype("float32")
    if transform is transforms.POINTWISE_TO_DENSE:
        weight = weight[:, :, None, None]
    layer = layers.Dense(5, use_bias=False)
    layer.build((None, 7))
    layer.kernel.assign(transform(weight, layer.kernel.shape))
    expected = torch_functional.conv2d(
        torch.from_numpy(x)[:, :, None, None], torch.from_numpy(weight.reshape(5, 7, 1, 1))
    )[:, :, 0, 0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected.numpy(), atol=1e-5)


def test_official_key_files_are_what_the_tests_expect():
    names = sorted(p.stem for p in (REFERENCE_DIR / "official_keys").glob("*.json"))
    assert set(RESNETS) | {"bav1_efficientnet_b0"} | set(OTHER_LAYOUTS) == set(names)
    assert (
        json.loads((REFERENCE_DIR / "official_keys" / "bav1_resnet50.json").read_text())[
            "total_params"
        ]
        == 28_706_376
    )
