"""`load_torch_weights(..., strict="trunk")`: an ImageNet trunk under BA.

torchvision itself is not installable here, so the checkpoints are built in
the tests from torchvision's key names and shapes
(`torchvision_layout.torchvision_resnet`; timm's ResNets use the same keys)
with random values. The expected Keras value of every key is computed there
too, by name and transpose, without the library's key map.
"""

import json

import keras
import numpy as np
import pytest
from conftest import REFERENCE_DIR, only_in
from torchvision_layout import expected_keras_value, torchvision_resnet

from keras_ba.applications import BAEfficientNet, BAResNet, BAResNet50
from keras_ba.convert import CheckpointMismatchError, load_torch_weights
from keras_ba.layers import BridgeAttention, SqueezeExcite

pytestmark = only_in(
    "tensorflow",
    "torch",
    reason="key matching by name and transpose: the TensorFlow and PyTorch passes "
    "(the JAX numerics of the same models are the parity tests')",
)

TINY = dict(stackwise_num_filters=[8, 16, 16, 16], stem_filters=8, input_shape=(32, 32, 3))


def weights_of(model, kinds):
    return [w for layer in model.layers if isinstance(layer, kinds) for w in layer.weights]


def snapshot(variables):
    return {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in variables}


def assert_unchanged(variables, before):
    after = snapshot(variables)
    assert after.keys() == before.keys()
    changed = [path for path, value in after.items() if not np.array_equal(value, before[path])]
    assert changed == [], "weights that must stay as they were changed"


def assert_trunk_loaded(model, state, head=True):
    """Every trunk key of `state` equals its Keras weight; returns them."""
    checked = []
    for key, value in state.items():
        if key.endswith("num_batches_tracked") or (not head and key.startswith("fc.")):
            continue
        layer, attribute, expected = expected_keras_value(key, value)
        variable = getattr(model.get_layer(layer), attribute)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), expected, err_msg=key)
        checked.append(variable)
    return checked


# === Full size: the documented use ===


@pytest.mark.large
def test_torchvision_resnet50_trunk_under_bridge_attention():
    state = torchvision_resnet([3, 4, 6, 3], "bottleneck")
    model = BAResNet50(attention="bav1")
    attention = weights_of(model, BridgeAttention)
    before = snapshot(attention)
    report = load_torch_weights(model, state, strict="trunk")

    checked = assert_trunk_loaded(model, state)
    assert {v.path for v in checked} | set(before) == {v.path for v in model.weights}
    assert_unchanged(attention, before)
    tensors = [k for k in state if not k.endswith("num_batches_tracked")]
    assert sorted(key for key, _, _ in report.mapped) == sorted(tensors)
    assert sorted(path for path, _ in report.not_loaded) == sorted(before)
    assert {reason for _, reason in report.not_loaded} == {"attention, trunk mode"}
    assert report.mode == "trunk" and report.missing == report.unexpected == []
    text = str(report)
    assert "in trunk mode" in text and f"mapped {len(tensors)} tensors" in text
    assert f"not loaded, left as they were: {len(before)} weights of 16 layers" in text


# === The same dict with strict=True, and trunk-mode checks (tiny models) ===


@pytest.fixture()
def tiny_state():
    return torchvision_resnet([1, 1, 1, 1], "basic", widths=[8, 16, 16, 16], stem=8, classes=5)


def tiny_model(**kwargs):
    options = dict(TINY, block_type="basic", classes=5, reduction=4)
    options.update(kwargs)
    return BAResNet([1, 1, 1, 1], **options)


def test_strict_refuses_a_trunk_checkpoint_and_suggests_the_trunk_mode(tiny_state):
    model = tiny_model()
    before = snapshot(model.weights)
    with pytest.raises(CheckpointMismatchError) as info:
        load_torch_weights(model, tiny_state)
    message = str(info.value)
    assert "missing key: layer1.0.ba.cur_fusion.0.weight" in message
    assert "strict='trunk'" in message and "--from torchvision" in message
    assert_unchanged(model.weights, before)


def test_trunk_mode_with_another_classifier_size(tiny_state):
    model = tiny_model(classes=3, attention="bav2")
    head = snapshot(model.get_layer("predictions").weights)
    report = load_torch_weights(model, tiny_state, strict="trunk")
    assert_trunk_loaded(model, tiny_state, head=False)
    assert_unchanged(model.get_layer("predictions").weights, head)
    assert ("predictions/kernel", "classifier of another size") in report.not_loaded
    assert {"fc.bias", "fc.weight"} <= set(report.skipped)
    assert "classifier weights of another size" in str(report)


def test_trunk_mode_without_the_head(tiny_state):
    model = tiny_model(include_top=False, pooling="avg", attention="se")
    se = snapshot(weights_of(model, SqueezeExcite))
    report = load_torch_weights(model, tiny_state, strict="trunk")
    assert_trunk_loaded(model, tiny_state, head=False)
    assert_unchanged(weights_of(model, SqueezeExcite), se)
    assert {"fc.weight", "fc.bias"} <= set(report.skipped)


@pytest.mark.parametrize(
    "change, expected",
    [
        ("drop", "missing key: layer2.0.conv1.weight"),
        ("add", "unexpected key: layer5.0.conv1.weight"),
    ],
)
def test_trunk_mode_still_checks_the_trunk(tiny_state, change, expected):
    if change == "drop":
        del tiny_state["layer2.0.conv1.weight"]
    else:
        tiny_state["layer5.0.conv1.weight"] = np.zeros((4, 4, 1, 1), "float32")
    model = tiny_model()
    before = snapshot(model.weights)
    with pytest.raises(CheckpointMismatchError, match=expected):
        load_torch_weights(model, tiny_state, strict="trunk")
    assert_unchanged(model.weights, before)


def test_trunk_mode_shape_mismatch_in_the_trunk(tiny_state):
    tiny_state["layer1.0.conv1.weight"] = np.zeros((8, 8, 1, 1), "float32")
    with pytest.raises(CheckpointMismatchError, match="shape mismatch: layer1.0.conv1.weight"):
        load_torch_weights(tiny_model(), tiny_state, strict="trunk")


def test_invalid_strict_value(tiny_state):
    with pytest.raises(ValueError, match="invalid value for `strict`"):
        load_torch_weights(tiny_model(), tiny_state, strict="trunks")


def test_torchvision_resnext_trunk_from_a_pth_file(tmp_path):
    """Grouped 3x3 convs (torchvision's resnext*), read from a hub-style .pth."""
    torch = pytest.importorskip("torch")
    options = dict(widths=[16, 16, 16, 16], stem=8, groups=4, width_per_group=16, classes=5)
    state = torchvision_resnet([1, 1, 1, 1], "bottleneck", **options)
    path = tmp_path / "resnext_tiny-0123abcd.pth"
    torch.save({key: torch.from_numpy(value) for key, value in state.items()}, path)
    model = BAResNet(
        [1, 1, 1, 1], [16, 16, 16, 16], stem_filters=8, groups=4, width_per_group=16,
        classes=5, input_shape=(32, 32, 3),
    )  # fmt: skip
    report = load_torch_weights(model, path, strict="trunk")
    assert_trunk_loaded(model, state)
    assert len(report.not_loaded) == len(weights_of(model, BridgeAttention))


def test_timm_style_safetensors_file(tmp_path, tiny_state):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(tiny_state, str(path))
    model = tiny_model()
    load_torch_weights(model, str(path), strict="trunk")
    assert_trunk_loaded(model, tiny_state)


def test_trunk_mode_skips_the_checkpoint_own_attention():
    """An authors' BAv2 checkpoint into a BAv1 model: only the trunk moves."""
    with np.load(REFERENCE_DIR / "parity" / "bav2_basic.npz") as data:
        state = {k[2:]: data[k].astype("float32") for k in data.files if k.startswith("w/")}
        meta = json.loads(str(data["meta"]))
    model = BAResNet(
        meta["depths"], meta["widths"], block_type=meta["block"], stem_filters=meta["stem"],
        classes=meta["num_classes"], attention="bav1", input_shape=(64, 64, 3),
    )  # fmt: skip
    attention = snapshot(weights_of(model, BridgeAttention))
    report = load_torch_weights(model, state, strict="trunk")
    assert_unchanged(weights_of(model, BridgeAttention), attention)
    ba_keys = sorted(k for k in state if ".ba." in k)
    assert sorted(report.skipped) == ba_keys
    assert_trunk_loaded(model, {k: v for k, v in state.items() if ".ba." not in k})


def test_efficientnet_trunk_mode():
    """The lukemelas EfficientNet layout without attention fills the trunk;
    every attention layer, the first block's gate included, stays as it was."""
    from keras_ba.layers import PixelGate

    with np.load(REFERENCE_DIR / "parity" / "bav1_efficientnet_small.npz") as data:
        state = {
            k[2:]: data[k].astype("float32")
            for k in data.files
            if k.startswith("w/") and ".att." not in k
        }
    model = BAEfficientNet(0.5, 0.5, 64, classes=10, input_shape=(64, 64, 3))
    attention_weights = weights_of(model, (BridgeAttention, PixelGate))
    attention = snapshot(attention_weights)
    report = load_torch_weights(model, state, strict="trunk")
    assert_unchanged(attention_weights, attention)
    assert report.num_mapped == len(state)
    assert sorted(p for p, _ in report.not_loaded) == sorted(attention)
    conv = keras.ops.convert_to_numpy(model.get_layer("block2a_expand_conv").kernel)
    np.testing.assert_array_equal(
        conv, state["_blocks.1._expand_conv.weight"].transpose(2, 3, 1, 0)
    )


class _OwnGate(keras.layers.Layer):
    """A user's own attention (list input, one weight): no PyTorch counterpart."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1][-1],), initializer="ones", name="scale")

    def call(self, inputs):
        return inputs[-1] * keras.ops.sigmoid(self.scale)


def test_trunk_mode_leaves_a_custom_attention_layer_alone(tiny_state):
    def clone(layer):
        if isinstance(layer, BridgeAttention):
            return _OwnGate(name=layer.name)
        return type(layer).from_config(layer.get_config())

    model = keras.models.clone_model(tiny_model(), clone_function=clone)
    own = [w for layer in model.layers if isinstance(layer, _OwnGate) for w in layer.weights]
    before = snapshot(own)
    with pytest.raises(ValueError, match="no counterpart .*conv2_block1_ba"):
        load_torch_weights(model, tiny_state)
    report = load_torch_weights(model, tiny_state, strict="trunk")
    assert_trunk_loaded(model, tiny_state)
    assert_unchanged(own, before)
    assert sorted(report.not_loaded) == sorted(
        (path, "no counterpart in the resnet layout") for path in before
    )
