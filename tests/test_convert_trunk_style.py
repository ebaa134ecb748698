"""`trunk_style` in each CNN family, and the converter's trunk report.

The functions are checked against references elsewhere: BA-MobileNetV3's
`"pytorch"` trunk in test_mobilenet_v3.py (an authors'-layout fixture with
logits from an independent torch implementation), BA-ResNet and
BA-EfficientNet against the authors' own code in test_convert.py (their
default trunks). Here: that `"pytorch"` builds exactly the trunk those
references validated, and that `keras-ba convert` builds and names it.
"""

import json

import keras
import numpy as np
import pytest
from conftest import REFERENCE_DIR, official_keys, only_in, shapes_only
from model_contract import tiny_efficientnet_blocks

from keras_ba.applications import (
    BAEfficientNetBackbone,
    BAResNet,
    BAResNetBackbone,
    BAResNeXt50_32x4d,
)
from keras_ba.cli import main
from keras_ba.convert import efficientnet_keys, resnet_keys
from keras_ba.convert.trunk_check import check_trunk, trunk_conventions

TINY_EFFICIENTNET = tiny_efficientnet_blocks(kernel_size=5, repeats=1)


ATTRIBUTES = ("filters", "kernel_size", "strides", "padding", "groups", "epsilon", "momentum",
              "axis", "rate", "noise_shape", "use_bias")  # fmt: skip


def layer_configs(model):
    """Every layer's class, name, inputs and function-defining attributes.

    Read from the attributes: `get_config()` of a Conv2D imports TensorFlow
    (seconds) under the other backends.
    """

    def describe(layer):
        inputs = keras.tree.flatten(layer.input) if layer.input is not None else []
        activation = getattr(layer, "activation", None)
        return (
            type(layer).__name__,
            layer.name,
            [x._keras_history.operation.name for x in inputs],
            getattr(activation, "__name__", activation),
            {name: getattr(layer, name) for name in ATTRIBUTES if hasattr(layer, name)},
        )

    return [describe(layer) for layer in model.layers]


def test_resnet_has_only_the_pytorch_trunk():
    backbone = shapes_only(
        BAResNetBackbone, [1, 1], [8, 16], block_type="basic", stem_filters=8, reduction=4
    )
    assert backbone.get_config()["trunk_style"] == "pytorch"
    # Symmetric padding and epsilon 1e-5: the trunk the authors' parity
    # fixtures (test_convert.py) validate.
    assert trunk_conventions(backbone) == (("symmetric",), (1e-5,))
    assert check_trunk(backbone, resnet_keys.TRUNK_STYLES, "resnet").matches_authors
    explicit = shapes_only(
        BAResNetBackbone,
        [1, 1],
        [8, 16],
        block_type="basic",
        stem_filters=8,
        reduction=4,
        trunk_style="pytorch",
    )
    assert layer_configs(explicit) == layer_configs(backbone)
    with pytest.raises(ValueError, match="BA-ResNet has no trunk_style='keras' trunk"):
        BAResNet([1], [8], block_type="basic", trunk_style="keras")
    with pytest.raises(ValueError, match="BA-ResNet has no trunk_style='keras' trunk"):
        BAResNeXt50_32x4d(trunk_style="keras")
    with pytest.raises(ValueError, match="`trunk_style`"):
        BAResNet([1], [8], block_type="basic", trunk_style="tf")


def test_efficientnet_pytorch_trunk_is_the_keras_trunk():
    def build(**kwargs):
        return shapes_only(
            BAEfficientNetBackbone, 0.5, 1.0, blocks_args=TINY_EFFICIENTNET, **kwargs
        )

    default, pytorch = build(), build(trunk_style="pytorch")
    assert default.trunk_style == "keras"
    assert pytorch.get_config()["trunk_style"] == "pytorch"
    # Layer for layer the same model: the authors pad TensorFlow-style and
    # use epsilon 1e-3, what the default trunk (validated by the authors'
    # BA-EfficientNet fixture in test_convert.py) does.
    assert layer_configs(pytorch) == layer_configs(default)
    assert trunk_conventions(pytorch) == (("same",), (1e-3,))
    checked = check_trunk(pytorch, efficientnet_keys.TRUNK_STYLES, "efficientnet")
    assert checked.style == "keras=pytorch" and checked.matches_authors


@pytest.fixture()
def authors_small_checkpoint(tmp_path):
    """A full-size checkpoint in the authors' BA-MobileNetV3-Small layout."""
    arrays = {}
    for key, shape in official_keys("bav1_mobilenetv3_small")["state_dict"]:
        if not key.endswith("num_batches_tracked"):
            fill = 1.0 if key.endswith(("running_var", ".1.weight")) else 0.0
            arrays[key] = np.full(shape, fill, dtype="float32")
    path = tmp_path / "ba_mobilenetv3_small.npz"
    np.savez(path, **arrays)
    return path, len(arrays)


@only_in(
    "torch",
    reason="a full-size conversion; the command builds the same model on every backend "
    "(each pass checks the pytorch trunk's numbers in test_mobilenet_v3.py)",
)
def test_convert_cli_builds_the_pytorch_trunk(tmp_path, authors_small_checkpoint, capsys):
    checkpoint, num_tensors = authors_small_checkpoint
    output = tmp_path / "ba_mobilenet_v3_small.keras"
    argv = ["convert", str(checkpoint), "--arch", "ba_mobilenet_v3_small"]
    assert main(argv + ["-o", str(output)]) == 0
    printed = capsys.readouterr().out
    assert f"mapped {num_tensors} tensors" in printed
    assert "trunk: trunk_style='pytorch'" in printed
    assert "symmetric padding at stride 2, BatchNorm epsilon 1e-05" in printed
    assert "computes the function of their PyTorch model" in printed
    model = keras.saving.load_model(output, safe_mode=True)
    assert model.get_layer("conv_bn").epsilon == 1e-5
    assert model.get_layer("expanded_conv_depthwise_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("expanded_conv_depthwise").padding == "valid"


def test_convert_cli_rejects_a_trunk_the_family_lacks(tmp_path, capsys):
    checkpoint = tmp_path / "c.npz"
    np.savez(checkpoint, **{"fc.weight": np.zeros((10, 512), "float32")})
    argv = ["convert", str(checkpoint), "--arch", "ba_resnet18", "--trunk-style", "keras"]
    assert main(argv + ["-o", str(tmp_path / "m.keras")]) == 1
    assert "BA-ResNet has no trunk_style='keras' trunk" in capsys.readouterr().err
    assert not (tmp_path / "m.keras").exists()


def test_meta_of_the_fixture_is_the_authors_small_layout():
    # The fixture's keys (block index aside) are key kinds of the authors'
    # full-size Small: its layout is theirs.
    with np.load(REFERENCE_DIR / "ba_mobilenet_v3" / "reduced_small.npz") as data:
        keys = [name[2:] for name in data.files if name.startswith("w/")]
        meta = json.loads(str(data["meta"]))

    def kind(key):
        parts = key.split(".")
        if parts[0] == "features" and parts[1] != "0":
            parts[1] = "*"
        return ".".join(parts)

    official = {kind(key) for key, _ in official_keys("bav1_mobilenetv3_small")["state_dict"]}
    assert {kind(key) for key in keys} <= official
    assert len(meta["cfgs"]) == 4
