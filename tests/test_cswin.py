"""BA-CSWin: parity with the official CSWin Transformer, counts, trunk loading, contract.

The reduced official model (`tests/fixtures/vit/parity/cswin_reduced.npz`,
built by microsoft/CSWin-Transformer's own class with random float16
weights) gives the expected logits; the full-size layout and total are the
official `CSWin_64_12211_tiny_224` ones (`official_keys/cswin_tiny.json`).
"""

import json

import keras
import numpy as np
import pytest
from conftest import REFERENCE_DIR, SHAPES_PASS, forward, only_in, shapes_only, trainable_count
from model_contract import run_backbone_contract

from keras_ba.applications import BACSWin, BACSWinBackbone, BACSWinTiny, get_model_builder
from keras_ba.applications.cswin import CrossShapedWindowAttention
from keras_ba.convert import CheckpointMismatchError, build_key_map, load_torch_weights
from keras_ba.layers import BridgeAttention, SqueezeExcite

FIXTURE = REFERENCE_DIR / "vit" / "parity" / "cswin_reduced.npz"
TINY = dict(
    embed_dim=8, depths=[1, 1, 1, 1], num_heads=[2, 2, 2, 2], split_sizes=[2, 2, 2, 1], reduction=4
)


def reduced():
    """The fixture: its config, float32 state dict, inputs and logits."""
    with np.load(FIXTURE) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    state = {k[2:]: v.astype("float32") for k, v in arrays.items() if k.startswith("w/")}
    return meta, state, arrays


def reduced_model(meta, attention=None):
    config = meta["config"]
    return BACSWin(
        config["embed_dim"],
        config["depth"],
        config["num_heads"],
        config["split_size"],
        mlp_ratio=config["mlp_ratio"],
        input_shape=(config["img_size"], config["img_size"], 3),
        classes=config["num_classes"],
        classifier_activation=None,
        attention=attention,
        reduction=4,
    )


# === Parity with the official model ===


def test_reduced_official_logits():
    meta, state, arrays = reduced()
    model = reduced_model(meta)
    report = load_torch_weights(model, state)
    assert report.num_mapped == len(state) == len(meta["key_order"])
    assert trainable_count(model) == meta["total_params"]
    logits = forward(model, arrays["x_nchw"].transpose(0, 2, 3, 1))
    error = np.abs(logits - arrays["logits"]).max()
    assert error <= meta["tolerance"], error


# === Full-size layout ===


@SHAPES_PASS
def test_full_size_count_and_layout_equal_the_official():
    with open(REFERENCE_DIR / "vit" / "official_keys" / "cswin_tiny.json") as file:
        official = json.load(file)
    model = shapes_only(BACSWinTiny, attention=None)
    assert trainable_count(model) == official["total_params"]
    targets = build_key_map(model).targets
    ours = {k: tuple(t.transform.torch_shape(tuple(t.variable.shape))) for k, t in targets.items()}
    assert ours == {key: tuple(shape) for key, shape in official["state_dict"]}
    with_ba = shapes_only(BACSWinTiny)
    blocks = sum(official["config"]["depth"])
    assert sum(isinstance(layer, BridgeAttention) for layer in with_ba.layers) == blocks
    # Stage 4 (7x7 at 224, split 7) is one global window: one LePE conv.
    assert len(with_ba.get_layer("stage4_0_attn").get_v) == 1
    assert len(with_ba.get_layer("stage3_20_attn").get_v) == 2


# === Warm start from an official checkpoint ===


def expected_keras_value(model, key, value):
    """The Keras variable a CSWin key fills and its value, from the official names."""
    *module, param = key.split(".")
    stem = {"0": "stage1_conv_embed", "2": "stage1_conv_embed_norm"}
    if module[0] == "stage1_conv_embed":
        layer = model.get_layer(stem[module[1]])
    elif module[0] in ("head", "norm") or module[0].startswith("merge"):
        layer = model.get_layer("_".join(module).replace("head", "predictions"))
    elif module[2] in ("qkv", "proj"):  # stage{i}.{j}.qkv: a sublayer of the attention
        layer = getattr(model.get_layer(f"{module[0]}_{module[1]}_attn"), module[2])
    elif module[2] == "attns":  # stage{i}.{j}.attns.{b}.get_v
        layer = model.get_layer(f"{module[0]}_{module[1]}_attn").get_v[int(module[3])]
    else:
        layer = model.get_layer("_".join(module))
    if isinstance(layer, keras.layers.LayerNormalization):
        return (layer.gamma if param == "weight" else layer.beta), value
    if param == "bias":
        return layer.bias, value
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # [C, 1, 3, 3] -> [3, 3, C, 1]
        return layer.kernel, value.transpose(2, 3, 0, 1)
    return layer.kernel, (value.T if value.ndim == 2 else value.transpose(2, 3, 1, 0))


def snapshot(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


@only_in(
    "tensorflow",
    "torch",
    reason="key matching by name and transpose (the JAX numerics are the parity test's)",
)
@pytest.mark.parametrize("container", ["state_dict_ema", "module."])
def test_trunk_loading_from_an_official_layout(container):
    meta, state, _ = reduced()
    rng = np.random.default_rng(1)
    state = {k: rng.normal(size=v.shape).astype("float32") for k, v in state.items()}
    model = reduced_model(meta, attention="bav1")
    attention = [w for layer in model.layers if isinstance(layer, BridgeAttention)
                 for w in layer.weights]  # fmt: skip
    before = snapshot(attention)
    if container == "module.":
        source = {"module." + k: v for k, v in state.items()}
    else:
        source = {container: state}
    report = load_torch_weights(model, source, strict="trunk")
    assert sorted(k for k, _, _ in report.mapped) == sorted(state)
    for key, value in state.items():
        variable, expected = expected_keras_value(model, key, value)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), expected, err_msg=key)
    assert len(attention) > 0
    for old, new in zip(before, snapshot(attention), strict=True):
        np.testing.assert_array_equal(old, new)


def test_strict_refuses_an_official_checkpoint_and_suggests_the_trunk_mode():
    meta, state, _ = reduced()
    model = reduced_model(meta, attention="bav2")
    with pytest.raises(CheckpointMismatchError, match="strict='trunk'") as info:
        load_torch_weights(model, state)
    assert "stage1.0.ba.fusions.0.0.weight" in str(info.value)


def test_trunk_without_the_head_skips_the_final_norm():
    meta, state, _ = reduced()
    config = meta["config"]
    model = BACSWin(
        config["embed_dim"], config["depth"], config["num_heads"], config["split_size"],
        input_shape=(64, 64, 3), include_top=False, attention=None,
    )  # fmt: skip
    report = load_torch_weights(model, state, strict="trunk")
    assert sorted(report.skipped) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]


# === Model contract and shapes ===


def test_backbone_contract(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 64, 64, 3)).astype("float32")
    backbone, _ = run_backbone_contract(
        BACSWinBackbone,
        dict(**TINY, attention="bav2", image_shape=(64, 64, 3)),
        x,
        (2, 2, 64),
        {"P2": (16, 16, 8), "P3": (8, 8, 16), "P4": (4, 4, 32), "P5": (2, 2, 64)},
        tmp_path,
        # BAv2's selection bias feeds a BatchNorm, which removes it in training.
        frozen_weights=("selection/bias",),
        # TensorFlow's XLA compile of the step costs minutes on a busy CPU.
        jit_compile=False,
    )
    assert backbone.get_layer("stage4_0_ba").version == "v2"


def test_cross_shaped_windows_and_head():
    model = shapes_only(BACSWin, **TINY, input_shape=(64, 64, 3), classes=5, attention="se")
    attention = model.get_layer("stage1_0_attn")
    assert attention._windows((16, 16)) == [(16, 2), (2, 16)]  # vertical, then horizontal
    assert [tuple(conv.kernel.shape) for conv in attention.get_v] == [(3, 3, 4, 1)] * 2
    assert model.get_layer("stage4_0_attn").last_stage
    assert model.get_layer("stage1_conv_embed").strides == (4, 4)
    assert model.get_layer("stage1_conv_embed_pad").padding == ((2, 2), (2, 2))
    assert all(
        model.get_layer(n).epsilon == 1e-5 for n in ("norm", "merge1_norm", "stage2_0_norm1")
    )
    assert isinstance(model.get_layer("stage2_0_se"), SqueezeExcite)
    assert model.output_shape == (None, 5)
    mixed = shapes_only(BACSWin, **TINY, input_shape=(64, 64, 3), dtype="mixed_bfloat16")
    assert mixed.get_layer("stage1_0_attn").compute_dtype == "bfloat16"
    assert mixed.get_layer("predictions").compute_dtype == "float32"


def _producer(tensor):
    return tensor._keras_history.operation.name


def test_attention_bridges_the_block_and_gates_the_mlp_output():
    model = shapes_only(BACSWinBackbone, **TINY, image_shape=(64, 64, 3), attention="bav1")
    layer = model.get_layer("stage1_0_ba")
    assert isinstance(layer, BridgeAttention) and layer.version == "v1"
    assert [_producer(x) for x in layer.input] == [
        "stage1_0_attn",
        "stage1_0_mlp_fc1",
        "stage1_0_mlp_fc2",
    ]
    add = model.get_layer("stage1_0_add2")
    assert sorted(_producer(x) for x in add.input) == ["stage1_0_add1", "stage1_0_ba"]
    plain = shapes_only(
        BACSWinBackbone, **TINY, image_shape=(64, 64, 3), attention=None, drop_path_rate=0.0
    )
    add = plain.get_layer("stage3_0_add2")
    assert sorted(_producer(x) for x in add.input) == ["stage3_0_add1", "stage3_0_mlp_fc2"]
    assert get_model_builder("ba_cswin_tiny") is BACSWinTiny


def test_errors_are_clear():
    with pytest.raises(ValueError, match="trunk_style='pytorch'"):
        BACSWinTiny(trunk_style="keras")
    with pytest.raises(ValueError, match="channels_last"):
        BACSWinBackbone(data_format="channels_first")
    with pytest.raises(ValueError, match="square size"):
        BACSWinBackbone(image_shape=(224, 192, 3))
    with pytest.raises(ValueError, match="square size"):
        BACSWinBackbone(image_shape=(None, None, 3))
    with pytest.raises(ValueError, match="`split_sizes`"):
        BACSWinBackbone(split_sizes=[1, 2, 7])
    with pytest.raises(ValueError, match="does not divide"):
        BACSWinBackbone(**dict(TINY, split_sizes=[3, 2, 2, 1]), image_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="even number of heads"):
        CrossShapedWindowAttention(3, 2)
