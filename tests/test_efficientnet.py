"""BA-EfficientNet: parameter counts against the authors' layout, contract.

Full-size models are only built inside `keras.StatelessScope(
initialize_variables=False)`: shapes without values, so counting B0-B7
costs no initialisation (on JAX every new weight shape is an XLA compile).
Everything that runs data uses a tiny two-stage configuration at 32x32.
"""

import re

import keras
import numpy as np
import pytest
from classifier_contract import run_classifier_contract
from conftest import (
    BACKEND,
    SHAPES_PASS,
    official_keys,
    shapes_only,
    spec_attention_params,
    trainable_count,
)
from model_contract import (
    CUSTOM_NAME,
    PooledGate,
    check_loads_under_other_backends,
    check_pyramid_shapes,
    randomize_weights,
    run_backbone_contract,
    tiny_efficientnet_blocks,
)

from keras_ba.applications import efficientnet, resnet
from keras_ba.applications.efficientnet import (
    BAEfficientNet,
    BAEfficientNetB0,
    BAEfficientNetBackbone,
    round_filters,
    round_repeats,
)
from keras_ba.layers import BridgeAttention, SqueezeExcite

OFFICIAL_B0 = 8_418_640  # authors' BA-EfficientNet-B0, 1000 classes
KERAS_B0 = 5_288_548  # keras.applications.EfficientNetB0(weights=None), trainable

# Tiny table: a block without expansion (keeps SE), then an expanded stage
# of two blocks (BA; the second one has the residual add and drop-connect).
TINY_BLOCKS = tiny_efficientnet_blocks()
SIZE = 32


def tiny(**kwargs):
    kwargs.setdefault("input_shape", (SIZE, SIZE, 3))
    kwargs.setdefault("classes", 3)
    return BAEfficientNet(0.25, 1.0, SIZE, blocks_args=TINY_BLOCKS, **kwargs)


def data(batch=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, SIZE, SIZE, 3)).astype("float32")
    return x, np.arange(batch) % classes


# === Parameter counts and the authors' layout ===


@SHAPES_PASS
def test_b0_bav1_count_matches_the_authors_exactly():
    # Within 0.5% is the requirement; the count is exact: same trunk, BA
    # widths expanded // 6 with a BatchNorm per branch (gamma, beta
    # trainable), SE with biases in block1a, Dense head with bias. Keras
    # moving statistics are non-trainable, like PyTorch buffers.
    official = official_keys("bav1_efficientnet_b0")["total_params"]
    assert official == OFFICIAL_B0
    count = trainable_count(shapes_only(BAEfficientNetB0))
    assert abs(count - official) / official < 0.005
    assert count == official


@SHAPES_PASS
def test_b0_se_count_equals_keras_applications():
    ours = trainable_count(shapes_only(BAEfficientNetB0, attention="se"))
    reference = shapes_only(keras.applications.EfficientNetB0, weights=None)
    assert ours == trainable_count(reference) == KERAS_B0


@SHAPES_PASS
def test_b0_attention_variants_counts():
    # Derived independently of our builders. BAv2 from the authors' BAv1
    # layout: each BA block (n branches of width w) drops n - 1 of its n
    # BatchNorms (2w trainable each) and adds the n-weight + 1-bias
    # selection. None: keras' EfficientNetB0 minus its SE layers' weights.
    bav2_delta = 0
    for block in _official_attention_widths():
        if block["squeeze"]:
            n, width = len(block["squeeze"]), block["squeeze"][0][1]
            bav2_delta += (n + 1) - 2 * width * (n - 1)
    bav2 = trainable_count(shapes_only(BAEfficientNetB0, attention="bav2"))
    assert bav2 == OFFICIAL_B0 + bav2_delta
    reference = shapes_only(keras.applications.EfficientNetB0, weights=None)
    se_weights = sum(
        int(np.prod(w.shape))
        for layer in reference.layers
        if "_se_" in layer.name
        for w in layer.trainable_weights
    )
    none = trainable_count(shapes_only(BAEfficientNetB0, attention=None))
    assert none == trainable_count(reference) - se_weights


def _official_attention_widths():
    """Per block: ("ba", [(in, width) per branch], (width, C)) or ("se", ...)."""
    blocks = {}
    for key, shape in official_keys("bav1_efficientnet_b0")["state_dict"]:
        match = re.match(r"_blocks\.(\d+)\.att\.(.+)$", key)
        if not match:
            continue
        index, rest = int(match.group(1)), match.group(2)
        entry = blocks.setdefault(index, {"squeeze": [], "excitation": None, "se": []})
        if re.fullmatch(r"(pre_fusions\.\d+|cur_fusion)\.0\.weight", rest):
            entry["squeeze"].append((shape[1], shape[0]))  # [out, in] -> (in, out)
        elif rest == "generation.1.weight":
            entry["excitation"] = (shape[1], shape[0])
        elif re.fullmatch(r"\d\.weight", rest):  # SE Conv2d [out, in, 1, 1]
            entry["se"].append((shape[1], shape[0]))
    return [blocks[i] for i in sorted(blocks)]


def test_b0_attention_widths_match_the_authors_json():
    model = shapes_only(BAEfficientNetB0)
    attention = [layer for layer in model.layers if re.search(r"_(ba|se)$", layer.name)]
    official = _official_attention_widths()
    assert len(attention) == len(official) == 16
    for layer, expected in zip(attention, official, strict=True):
        if isinstance(layer, BridgeAttention):
            squeeze = [tuple(d.kernel.shape) for d in layer.squeeze_layers]
            assert squeeze == expected["squeeze"], layer.name
            assert tuple(layer.excitation.kernel.shape) == expected["excitation"]
            assert layer.version == "v1" and layer.hidden_activation == "swish"
        else:
            assert isinstance(layer, SqueezeExcite) and layer.use_bias
            kernels = [tuple(layer.squeeze.kernel.shape), tuple(layer.excitation.kernel.shape)]
            assert kernels == expected["se"], layer.name
    assert [layer.name for layer in attention[:3]] == ["block1a_se", "block2a_ba", "block2b_ba"]


def test_b0_conv_kernels_follow_the_authors_state_dict_order():
    # Every conv of the authors' model, in state_dict order, has the kernel
    # of our conv at the same position (PyTorch [out, in, kh, kw] ->
    # Keras [kh, kw, in, out]; depthwise [C, 1, kh, kw] -> [kh, kw, C, 1]).
    model = shapes_only(BAEfficientNetB0)
    ours = [
        tuple(layer.kernel.shape)
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
    ]
    theirs = []
    for key, shape in official_keys("bav1_efficientnet_b0")["state_dict"]:
        if len(shape) != 4 or ".att." in key:
            continue
        out, inp, kh, kw = shape
        theirs.append((kh, kw, out, 1) if "_depthwise_conv" in key else (kh, kw, inp, out))
    assert ours == theirs


@SHAPES_PASS
@pytest.mark.large
@pytest.mark.parametrize("index", range(1, 8))
def test_large_variants_counts(index):
    # SE variants equal keras.applications; no official B1-B7 BA layout
    # exists, so the BA count is checked as the attention-free trunk (the
    # keras SE model less SPEC.md's SE parameters) plus SPEC.md's BA ones.
    builder = getattr(efficientnet, f"BAEfficientNetB{index}")
    reference = getattr(keras.applications, f"EfficientNetB{index}")
    se_model = shapes_only(builder, attention="se")
    assert trainable_count(se_model) == trainable_count(shapes_only(reference, weights=None))
    trunk = trainable_count(se_model) - spec_attention_params(se_model)
    assert trainable_count(shapes_only(builder, attention=None)) == trunk
    ba_model = shapes_only(builder)
    assert trainable_count(ba_model) == trunk + spec_attention_params(ba_model)


def test_compound_scaling_helpers():
    assert round_filters(32, 1.0) == 32
    assert round_filters(16, 1.1) == 16
    assert round_filters(1280, 1.8) == 2304
    assert round_repeats(3, 1.4) == 5
    assert efficientnet._block_letter(0) == "a"
    assert efficientnet._block_letter(25) == "z"
    assert efficientnet._block_letter(26) == "aa"


def test_preprocess_input_is_the_resnet_convention():
    assert efficientnet.preprocess_input is resnet.preprocess_input


# === Structure of a tiny model ===


def test_layer_names_and_attention_per_block():
    model = shapes_only(tiny, drop_connect_rate=0.2)
    names = [layer.name for layer in model.layers]
    for name in (
        "images", "stem_conv", "stem_bn", "stem_activation",
        "block1a_dwconv", "block1a_bn", "block1a_activation", "block1a_se",
        "block1a_project_conv", "block1a_project_bn",
        "block2a_expand_conv", "block2a_expand_bn", "block2a_expand_activation",
        "block2a_dwconv", "block2a_ba", "block2b_ba", "block2b_drop", "block2b_add",
        "top_conv", "top_bn", "top_activation", "avg_pool", "top_dropout", "predictions",
    ):  # fmt: skip
        assert name in names, name
    assert "block1a_expand_conv" not in names and "block2a_add" not in names
    assert all("." not in name for name in names)
    assert "block1a_drop" not in names  # first block: drop-connect rate 0
    assert model.get_layer("block2b_drop").noise_shape == (None, 1, 1, 1)
    assert model.get_layer("block2a_dwconv").use_bias is False
    bn = model.get_layer("block2a_bn")
    assert (bn.epsilon, bn.momentum) == (1e-3, 0.99)

    # BA bridges [expand activation, depthwise activation] and feeds the
    # projection; block1a (no expansion) keeps SE with biases.
    ba = model.get_layer("block2a_ba")
    assert isinstance(ba, BridgeAttention) and ba.reduction == 6
    assert [t.name for t in ba.input] == [
        model.get_layer("block2a_expand_activation").output.name,
        model.get_layer("block2a_activation").output.name,
    ]
    assert model.get_layer("block2a_project_conv").input.name == ba.output.name
    se = model.get_layer("block1a_se")
    assert se.use_bias and se.squeeze_channels == 2  # int(8 * 0.25)


@pytest.mark.parametrize(
    "attention, expected",
    [("bav2", {"block1a_se", "block2a_ba", "block2b_ba"}),
     ("se", {"block1a_se", "block2a_se", "block2b_se"}),
     (None, set())],
)  # fmt: skip
def test_attention_choice(attention, expected):
    model = shapes_only(tiny, attention=attention)
    found = {layer.name for layer in model.layers if re.search(r"_(ba|se)$", layer.name)}
    assert found == expected
    if attention == "se":
        # Standard EfficientNet SE: a quarter of the block *input* filters.
        assert model.get_layer("block2a_se").squeeze_channels == 2
        assert model.get_layer("block2b_se").squeeze_channels == 2


def test_unknown_input_size_for_every_head():
    for include_top, pooling in ((True, None), (False, None), (False, "avg"), (False, "max")):
        unknown = shapes_only(tiny, include_top=include_top, pooling=pooling, input_shape=None)
        assert unknown.input_shape == (None, None, None, 3)


def test_input_tensor_and_channels_first_build():
    images = keras.Input((SIZE, SIZE, 3))
    model = shapes_only(tiny, input_tensor=images, input_shape=None)
    assert model.inputs[0] is images
    first = shapes_only(tiny, data_format="channels_first", input_shape=(3, SIZE, SIZE))
    assert first.output_shape == (None, 3)
    assert trainable_count(first) == trainable_count(shapes_only(tiny))


# === Training, serialization, precision ===


# The attention of each contract configuration (drop-connect off: the loss
# must fall in one deterministic step).
CONTRACT_CONFIGS = {"custom_class": PooledGate, "registered_name": CUSTOM_NAME}


@pytest.mark.parametrize("config", list(CONTRACT_CONFIGS))
def test_backbone_contract(config, tmp_path):
    # block1a has one feature: the family's fallback (SE) whatever the
    # attention; block2a/2b get the custom attention.
    x, _ = data()
    backbone, _ = run_backbone_contract(
        BAEfficientNetBackbone,
        dict(
            width_coefficient=0.25,
            depth_coefficient=1.0,
            drop_connect_rate=0.0,
            blocks_args=TINY_BLOCKS,
            attention=CONTRACT_CONFIGS[config],
            image_shape=(SIZE, SIZE, 3),
        ),
        x,
        (8, 8, 320),
        {"P1": (16, 16, 8), "P2": (8, 8, 8)},
        tmp_path,
        jit_compile=config == "registered_name",  # one XLA compile per family
    )
    suffix = "attn" if config == "custom_class" else CUSTOM_NAME
    names = {layer.name for layer in backbone.layers}
    assert {"block1a_se", f"block2a_{suffix}", f"block2b_{suffix}"} <= names


def test_pyramid_outputs_at_two_sizes_and_both_data_formats():
    stages = [
        dict(TINY_BLOCKS[0]),
        *(
            dict(kernel_size=3, repeats=1, filters_in=f_in, filters_out=f_out,
                 expand_ratio=6, id_skip=True, strides=2, se_ratio=0.25)
            for f_in, f_out in ((16, 24), (24, 40), (40, 80), (80, 112))
        ),
    ]  # fmt: skip

    def build(image_shape, data_format):
        return BAEfficientNetBackbone(
            0.25, 1.0, blocks_args=stages, image_shape=image_shape, data_format=data_format
        )

    def expected(size):  # last block at each stride; widths x 0.25, rounded to 8
        widths = {1: 8, 2: 8, 3: 16, 4: 24, 5: 32}
        return {f"P{k}": (size >> k, size >> k, widths[k]) for k in range(1, 6)}

    check_pyramid_shapes(build, expected)


@pytest.mark.slow
def test_keras_file_loads_under_another_backend(tmp_path):
    if BACKEND != "jax":
        pytest.skip(
            "budget: BA-EfficientNet files are loaded across backends in the jax pass "
            "(jax -> tensorflow; the families share the backend pairs in a cycle)"
        )
    backbone = BAEfficientNetBackbone(
        0.25, 1.0, blocks_args=TINY_BLOCKS, attention="bav2", image_shape=(SIZE, SIZE, 3)
    )
    randomize_weights(backbone)
    check_loads_under_other_backends(backbone, data()[0], tmp_path, targets=["tensorflow"])


def test_classifier_contract(tmp_path):
    x, _ = data()
    run_classifier_contract(
        lambda **kwargs: tiny(**{"attention": "bav2", **kwargs}),
        x, 3, (8, 8, 320), "block2a_ba", tmp_path,
    )  # fmt: skip


def test_weights_argument_builds_the_trunk_alone(tmp_path):
    model = tiny(attention="bav2")
    weights_path = str(tmp_path / "ba_efficientnet.weights.h5")
    model.save_weights(weights_path)
    backbone = tiny(attention="bav2", weights=weights_path, include_top=False)
    assert backbone.output_shape == (None, 8, 8, 320)


def test_builds_under_mixed_bfloat16():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = tiny()
    assert model.get_layer("block2a_dwconv").compute_dtype == "bfloat16"


# === Errors ===


def test_errors_are_clear():
    with pytest.raises(ValueError, match="`attention`"):
        tiny(attention="cbam")
    with pytest.raises(ValueError, match="`pooling`"):
        tiny(include_top=False, pooling="sum")
    with pytest.raises(ValueError, match="too small"):
        tiny(input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="`input_shape`"):
        tiny(input_shape=(32, 32))
    with pytest.raises(ValueError, match="`include_top`"):
        tiny(include_top="yes")
    with pytest.raises(ValueError, match="`classes`"):
        tiny(classes=0)
    with pytest.raises(ValueError, match="does not exist"):
        tiny(weights="missing.weights.h5")
    with pytest.raises(ValueError, match="`width_coefficient`"):
        BAEfficientNet(0, 1.0, 224)
    with pytest.raises(ValueError, match="`depth_coefficient`"):
        BAEfficientNet(1.0, -1, 224)
    with pytest.raises(ValueError, match="`default_size`"):
        BAEfficientNet(1.0, 1.0, 22.4)
    with pytest.raises(ValueError, match="`dropout_rate`"):
        tiny(dropout_rate=1.0)
    with pytest.raises(ValueError, match="`drop_connect_rate`"):
        tiny(drop_connect_rate=-0.1)
    with pytest.raises(ValueError, match="`reduction`"):
        tiny(reduction=0)
    with pytest.raises(ValueError, match="reduction=100, larger than the 48 channels"):
        tiny(reduction=100)
    with pytest.raises(ValueError, match="`blocks_args`"):
        BAEfficientNet(1.0, 1.0, 224, blocks_args=[])
    with pytest.raises(ValueError, match="lacks the keys"):
        BAEfficientNet(1.0, 1.0, 224, blocks_args=[{"kernel_size": 3}])
    with pytest.raises(ValueError, match="strides"):
        BAEfficientNet(1.0, 1.0, 224, blocks_args=[dict(TINY_BLOCKS[0], strides=3)])
    with pytest.raises(ValueError, match="`data_format`"):
        tiny(data_format="nhwc")
