"""BA-ResNeXt: counts against torchvision, grouped convs, contract.

The named builders are thin calls of `BAResNet`; full-size models are built
shapes-only (`keras.StatelessScope(initialize_variables=False)`), and data
runs through a tiny grouped BAResNet from the same general builder.
"""

import keras
import numpy as np
import pytest
from classifier_contract import run_classifier_contract
from conftest import SHAPES_PASS, shapes_only, spec_attention_params, trainable_count
from model_contract import run_backbone_contract

from keras_ba.applications import (
    BAResNet,
    BAResNetBackbone,
    BAResNeXt50_32x4d,
    BAResNeXt101_32x8d,
    resnext,
)
from keras_ba.applications import resnet as resnet_module
from keras_ba.layers import BridgeAttention

# torchvision.models.resnext50_32x4d / resnext101_32x8d, 1000 classes.
TORCHVISION = {"50": 25_028_904, "101": 88_791_336}
SIZE = 16


# Two stages of one grouped bottleneck: 4 groups of 2 channels.
TINY_KWARGS = dict(
    stackwise_num_blocks=[1, 1],
    stackwise_num_filters=[8, 16],
    stem="cifar",
    stem_filters=8,
    groups=4,
    width_per_group=16,
)


def tiny(**kwargs):
    kwargs.setdefault("input_shape", (SIZE, SIZE, 3))
    kwargs.setdefault("classes", 3)
    return BAResNet(**TINY_KWARGS, **kwargs)


def data(batch=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, SIZE, SIZE, 3)).astype("float32")
    return x, np.arange(batch) % classes


# === Full-size models: counts and configuration ===


@SHAPES_PASS
def test_resnext50_counts():
    # Without attention this is torchvision's resnext50_32x4d exactly.
    # BAv1 paper Table 4 prints 28.85M for BA-ResNeXt-50; the authors'
    # BA_resnext.py also builds four `gate` Linear layers (2*(C/16) ->
    # C/16 for C = 256, 512, 1024, 2048: 43,520 parameters) that their
    # released BA module never uses; 28,806,984 + 43,520 = 28,850,504.
    assert trainable_count(shapes_only(BAResNeXt50_32x4d, attention=None)) == TORCHVISION["50"]
    for attention in ("bav1", "bav2", "se"):
        model = shapes_only(BAResNeXt50_32x4d, attention=attention)
        expected = TORCHVISION["50"] + spec_attention_params(model)
        assert trainable_count(model) == expected, attention
    # The BAv1 total, 28,806,984, is the paper's 28.85M less the unused gates.
    assert trainable_count(shapes_only(BAResNeXt50_32x4d)) + 43_520 == 28_850_504


@SHAPES_PASS
@pytest.mark.large
def test_resnext101_counts():
    assert trainable_count(shapes_only(BAResNeXt101_32x8d, attention=None)) == TORCHVISION["101"]
    model = shapes_only(BAResNeXt101_32x8d)
    assert trainable_count(model) == TORCHVISION["101"] + spec_attention_params(model)


def test_resnext50_grouped_convs_and_bridge_widths():
    model = shapes_only(BAResNeXt50_32x4d)
    assert model.name == "ba_resnext50_32x4d"
    conv = model.get_layer("conv2_block1_2_conv")  # 32 groups x 4 channels
    assert conv.groups == 32 and tuple(conv.kernel.shape) == (3, 3, 4, 128)
    assert model.get_layer("conv5_block3_2_conv").groups == 32
    ba = model.get_layer("conv2_block1_ba")  # bridges 128, 128, 256 -> 256 // 16
    assert isinstance(ba, BridgeAttention)
    assert [tuple(d.kernel.shape) for d in ba.squeeze_layers] == [(128, 16), (128, 16), (256, 16)]
    assert sum(layer.name.endswith("_ba") for layer in model.layers) == 16


@pytest.mark.large
def test_resnext101_configuration():
    model = shapes_only(BAResNeXt101_32x8d)
    conv = model.get_layer("conv4_block23_2_conv")  # 32 groups x 32 channels
    assert conv.groups == 32 and tuple(conv.kernel.shape) == (3, 3, 32, 1024)
    assert sum(layer.name.endswith("_ba") for layer in model.layers) == 33


@pytest.mark.parametrize(
    "include_top, pooling, expected",
    [(True, None, (None, 10)), (False, None, (None, 2, 2, 2048)),
     (False, "avg", (None, 2048)), (False, "max", (None, 2048))],
)  # fmt: skip
def test_named_builder_output_shapes(include_top, pooling, expected):
    model = shapes_only(
        BAResNeXt50_32x4d,
        include_top=include_top,
        pooling=pooling,
        classes=10,
        input_shape=(64, 64, 3),
    )
    assert model.output_shape == expected


def test_preprocess_input_is_the_resnet_convention():
    assert resnext.preprocess_input is resnet_module.preprocess_input


# === Tiny grouped model: training, serialization, precision ===


def test_classifier_contract(tmp_path):
    x, _ = data()
    run_classifier_contract(tiny, x, 3, (8, 8, 64), "conv2_block1_ba", tmp_path)


def test_backbone_contract(tmp_path):
    # BAv2: the selection bias is followed by a BatchNorm in training mode,
    # which removes any constant, so its gradient is exactly zero (SPEC.md:
    # the authors' design cancels it). Every other weight must move.
    x, _ = data()
    _, loaded = run_backbone_contract(
        BAResNetBackbone,
        dict(TINY_KWARGS, attention="bav2", image_shape=(SIZE, SIZE, 3)),
        x,
        (8, 8, 64),
        {"P0": (16, 16, 32), "P1": (8, 8, 64)},
        tmp_path,
        frozen_weights=("selection/bias",),
    )
    assert loaded.get_layer("conv2_block1_2_conv").groups == 4


def test_builds_under_mixed_bfloat16():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = shapes_only(BAResNeXt50_32x4d, classes=10)
    assert model.get_layer("conv3_block1_ba").compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model.outputs[0].dtype == "float32"


# === Errors ===


def test_errors_are_clear():
    with pytest.raises(ValueError, match="`attention`"):
        BAResNeXt50_32x4d(attention="ba")
    with pytest.raises(ValueError, match="`pooling`"):
        BAResNeXt50_32x4d(include_top=False, pooling="gem")
    with pytest.raises(ValueError, match="too small"):
        BAResNeXt101_32x8d(input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="`classes`"):
        BAResNeXt50_32x4d(classes=-1)
    with pytest.raises(ValueError, match="`reduction`"):
        BAResNeXt50_32x4d(reduction=0)
    with pytest.raises(ValueError, match="does not exist"):
        shapes_only(BAResNeXt50_32x4d, weights="nowhere.keras")
