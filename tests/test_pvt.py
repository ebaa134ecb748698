"""BA-PVT (v1): parity with the official PVT, counts, trunk loading, contract.

The reduced official model (`tests/fixtures/vit/parity/pvt_reduced.npz`,
built by whai362/PVT's own class with random float16 weights) gives the
expected logits at 64x64 and at the non-square 96x32, where the position
embeddings are resized; the full-size layouts and totals are the official
`pvt_tiny()` / `pvt_small()` ones (`official_keys/pvt_*.json`).
"""

import json

import keras
import numpy as np
import pytest
from conftest import REFERENCE_DIR, SHAPES_PASS, forward, only_in, shapes_only, trainable_count
from model_contract import run_backbone_contract

from keras_ba.applications import (
    BAPVT,
    BACSWin,
    BAPVTBackbone,
    BAPVTSmall,
    BAPVTTiny,
    get_model_builder,
)
from keras_ba.applications.pvt_layers import PositionEmbedding, bilinear_matrix
from keras_ba.convert import CheckpointMismatchError, build_key_map, load_torch_weights
from keras_ba.layers import BridgeAttention, SqueezeExcite

FIXTURE = REFERENCE_DIR / "vit" / "parity" / "pvt_reduced.npz"
# Spatial reduction to 2x2 keys in stages 1-2 (one key would leave q without
# a gradient: a softmax over one key is constant).
TINY = dict(
    embed_dims=[8, 8, 16, 16],
    num_heads=[1, 1, 2, 2],
    mlp_ratios=[2, 2, 2, 2],
    sr_ratios=[4, 2, 1, 1],
    pos_embed_size=32,
    reduction=4,
)


def reduced():
    """The fixture: its config, float32 state dict, inputs and logits."""
    with np.load(FIXTURE) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    state = {k[2:]: v.astype("float32") for k, v in arrays.items() if k.startswith("w/")}
    return meta, state, arrays


def reduced_model(meta, input_shape, attention=None):
    config = meta["config"]
    return BAPVT(
        config["depths"],
        embed_dims=config["embed_dims"],
        num_heads=config["num_heads"],
        mlp_ratios=config["mlp_ratios"],
        sr_ratios=config["sr_ratios"],
        pos_embed_size=config["img_size"],
        input_shape=input_shape,
        classes=config["num_classes"],
        classifier_activation=None,
        attention=attention,
        reduction=4,
    )


# === Parity with the official model ===


@pytest.mark.parametrize(
    "images, logits, tolerance", [("x_nchw", "logits", "tolerance"),
                                  ("x_nchw_alt", "logits_alt", "alt_tolerance")]
)  # fmt: skip
def test_reduced_official_logits(images, logits, tolerance):
    meta, state, arrays = reduced()
    x = arrays[images].transpose(0, 2, 3, 1)
    model = reduced_model(meta, x.shape[1:])
    report = load_torch_weights(model, state)
    assert report.num_mapped == len(state) == len(meta["key_order"])
    assert trainable_count(model) == meta["total_params"]
    error = np.abs(forward(model, x) - arrays[logits]).max()
    assert error <= meta[tolerance], error


def test_position_embedding_resize_is_pytorch_bilinear():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for stored, grid in (((4, 4), (6, 2)), ((3, 5), (7, 3)), ((8, 8), (3, 8))):
        table = rng.normal(size=(1, 1 + stored[0] * stored[1], 3)).astype("float32")
        layer = PositionEmbedding(grid, stored, prefix_tokens=1, resize=True)
        layer.build((None, 1 + grid[0] * grid[1], 3))
        layer.embeddings.assign(table)
        # The reference: view as (1, C, h0, w0), F.interpolate bilinear, flatten.
        patches = torch.from_numpy(table[:, 1:]).reshape(1, *stored, 3).permute(0, 3, 1, 2)
        resized = torch.nn.functional.interpolate(patches, size=grid, mode="bilinear")
        resized = resized.reshape(1, 3, -1).permute(0, 2, 1).numpy()
        expected = np.concatenate([table[:, :1], resized], axis=1)
        got = keras.ops.convert_to_numpy(layer.resized())
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert np.allclose(bilinear_matrix(5, 5), np.eye(5))


# === Full-size layouts ===


@SHAPES_PASS
@pytest.mark.parametrize("builder, name", [(BAPVTTiny, "pvt_tiny"), (BAPVTSmall, "pvt_small")])
def test_full_size_count_and_layout_equal_the_official(builder, name):
    with open(REFERENCE_DIR / "vit" / "official_keys" / f"{name}.json") as file:
        official = json.load(file)
    model = shapes_only(builder, attention=None)
    assert trainable_count(model) == official["total_params"]
    targets = build_key_map(model).targets
    ours = {k: tuple(t.transform.torch_shape(tuple(t.variable.shape))) for k, t in targets.items()}
    assert ours == {key: tuple(shape) for key, shape in official["state_dict"]}
    with_ba = shapes_only(builder)
    blocks = sum(official["config"]["depths"])
    assert sum(isinstance(layer, BridgeAttention) for layer in with_ba.layers) == blocks


# === Warm start from an official checkpoint ===


def expected_keras_value(model, key, value):
    """The Keras variable a PVT key fills and its value, from the official names."""
    *module, param = key.split(".")
    if not module:  # pos_embed{i}, cls_token: parameters of the model
        layer = model.get_layer(param)
        return (layer.token if param == "cls_token" else layer.embeddings), value
    if module[0] == "head":
        module[0] = "predictions"
    if len(module) > 3 and module[2] == "attn":  # block{i}.{j}.attn.{q,kv,proj,sr,norm}
        layer = getattr(model.get_layer("_".join(module[:3])), module[3])
    else:
        layer = model.get_layer("_".join(module))
    if isinstance(layer, keras.layers.LayerNormalization):
        return (layer.gamma if param == "weight" else layer.beta), value
    if param == "bias":
        return layer.bias, value
    return layer.kernel, (value.T if value.ndim == 2 else value.transpose(2, 3, 1, 0))


def snapshot(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


@only_in(
    "tensorflow",
    "torch",
    reason="key matching by name and transpose (the JAX numerics are the parity test's)",
)
@pytest.mark.parametrize("container", ["model", "state_dict", "state_dict_ema", "module."])
def test_trunk_loading_from_an_official_layout(container):
    meta, state, _ = reduced()
    rng = np.random.default_rng(1)
    state = {k: rng.normal(size=v.shape).astype("float32") for k, v in state.items()}
    model = reduced_model(meta, (64, 64, 3), attention="bav2")
    attention = [w for layer in model.layers if isinstance(layer, BridgeAttention)
                 for w in layer.weights]  # fmt: skip
    before = snapshot(attention)
    if container == "module.":
        source = {"module." + k: v for k, v in state.items()}
    else:
        source = {container: state, "epoch": 300}
    report = load_torch_weights(model, source, strict="trunk")
    assert sorted(k for k, _, _ in report.mapped) == sorted(state)
    for key, value in state.items():
        variable, expected = expected_keras_value(model, key, value)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), expected, err_msg=key)
    assert len(attention) > 0
    for old, new in zip(before, snapshot(attention), strict=True):
        np.testing.assert_array_equal(old, new)
    assert {reason for _, reason in report.not_loaded} == {"attention, trunk mode"}


def test_strict_refuses_an_official_checkpoint_and_suggests_the_trunk_mode():
    meta, state, _ = reduced()
    model = reduced_model(meta, (64, 64, 3), attention="se")
    before = snapshot(model.weights)
    with pytest.raises(CheckpointMismatchError, match="strict='trunk'") as info:
        load_torch_weights(model, state)
    assert "block1.0.se.fc.0.weight" in str(info.value)
    for old, new in zip(before, snapshot(model.weights), strict=True):
        np.testing.assert_array_equal(old, new)


# === Model contract and shapes ===


def test_backbone_contract(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    backbone, _ = run_backbone_contract(
        BAPVTBackbone,
        dict(depths=[1, 1, 1, 1], **TINY, attention="bav2", image_shape=(32, 32, 3)),
        x,
        (1, 1, 16),
        {"P2": (8, 8, 8), "P3": (4, 4, 8), "P4": (2, 2, 16), "P5": (1, 1, 16)},
        tmp_path,
        # BAv2's selection bias feeds a BatchNorm, which removes it in training.
        frozen_weights=("selection/bias",),
        # TensorFlow's XLA compile of the step costs minutes on a busy CPU.
        jit_compile=False,
    )
    assert backbone.get_layer("block4_0_ba").version == "v2"


@pytest.mark.parametrize("image_shape", [(64, 32, 3), (32, 96, 3), (64, 64, 3)])
def test_other_input_sizes_resize_the_position_embeddings(image_shape):
    backbone = shapes_only(BAPVTBackbone, [1, 1, 1, 1], **TINY, image_shape=image_shape)
    h, w = image_shape[0] // 4, image_shape[1] // 4
    want = {f"P{k + 2}": (None, h >> k, w >> k, c) for k, c in enumerate([8, 8, 16, 16])}
    assert {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()} == want
    # (64, 64): stage 2 has stage 1's construction count (8x8) but stores 4x4.
    assert all(backbone.get_layer(f"pos_embed{s}").resize for s in (1, 2, 3, 4))
    assert backbone.get_layer("pos_embed4").embeddings.shape == (1, 1 + 1, 16)


def test_classifier_head_and_attention_kinds():
    model = shapes_only(BAPVT, [1, 1, 1, 1], **TINY, classes=5, attention="se")
    assert model.get_layer("norm").epsilon == 1e-6
    assert model.get_layer("patch_embed1_norm").epsilon == 1e-5
    assert model.get_layer("block1_0_norm2").epsilon == 1e-6
    assert model.get_layer("block1_0_attn").sr.strides == (4, 4)
    assert isinstance(model.get_layer("block2_0_se"), SqueezeExcite)
    assert model.output_shape == (None, 5)
    trunk = shapes_only(BAPVT, [1, 1, 1, 1], **TINY, include_top=False, pooling="avg")
    assert trunk.output_shape == (None, 16)
    mixed = shapes_only(BAPVT, [1, 1, 1, 1], **TINY, dtype="mixed_bfloat16")
    assert mixed.get_layer("block1_0_attn").compute_dtype == "bfloat16"
    assert mixed.get_layer("predictions").compute_dtype == "float32"


def _producer(tensor):
    return tensor._keras_history.operation.name


def test_attention_bridges_the_block_and_gates_the_mlp_output():
    model = shapes_only(BAPVTBackbone, [1, 1, 1, 1], **TINY, drop_path_rate=0.0)
    layer = model.get_layer("block4_0_ba")  # the class-token stage too
    assert isinstance(layer, BridgeAttention) and layer.version == "v2"
    assert [_producer(x) for x in layer.input] == [
        "block4_0_attn",
        "block4_0_mlp_fc1",
        "block4_0_mlp_fc2",
    ]
    add = model.get_layer("block4_0_add2")
    assert sorted(_producer(x) for x in add.input) == ["block4_0_add1", "block4_0_ba"]
    plain = shapes_only(BAPVTBackbone, [1, 1, 1, 1], **TINY, attention=None)
    add = plain.get_layer("block1_0_add2")
    assert sorted(_producer(x) for x in add.input) == ["block1_0_add1", "block1_0_mlp_fc2"]
    assert get_model_builder("ba_pvt_tiny") is BAPVTTiny
    assert get_model_builder("ba_pvt_small") is BAPVTSmall


def test_errors_are_clear():
    with pytest.raises(ValueError, match="trunk_style='pytorch'"):
        BAPVTTiny(trunk_style="keras")
    with pytest.raises(ValueError, match="channels_last"):
        BAPVTBackbone(data_format="channels_first")
    with pytest.raises(ValueError, match="multiples of 32"):
        BAPVTBackbone(image_shape=(100, 100, 3))
    with pytest.raises(ValueError, match="multiples of 32"):
        BAPVTBackbone(image_shape=(None, None, 3))
    with pytest.raises(ValueError, match="ratio must be 1"):
        BAPVTBackbone(sr_ratios=[8, 4, 2, 2])
    with pytest.raises(ValueError, match="`depths`"):
        BAPVTBackbone(depths=[2, 2, 2])
    with pytest.raises(ValueError, match="heads must divide"):
        BAPVTBackbone(num_heads=[3, 2, 5, 8])
    with pytest.raises(ValueError, match="`drop_path_rate`"):
        BAPVTBackbone(drop_path_rate=1.5)
    with pytest.raises(ValueError, match="resize=True"):
        PositionEmbedding((2, 2), (3, 3))


@only_in("tensorflow", reason="layer names only; keras-cv's task models are tested in test_cv")
def test_keras_cv_backbone_finds_the_stage_outputs():
    from keras_ba.cv.backbone import BABackbone

    model = shapes_only(
        BAPVT, [1, 1, 1, 1], **TINY, input_shape=(32, 32, 3), include_top=False, attention=None
    )
    assert BABackbone(model).pyramid_level_inputs == {
        f"P{s + 1}": f"stage{s}_map" for s in (1, 2, 3, 4)
    }
    # BA-CSWin here too (one keras-cv import): the last block of each stage.
    model = shapes_only(
        BACSWin,
        8,
        [1, 2, 1, 1],
        [2, 2, 2, 2],
        [2, 2, 2, 1],
        input_shape=(64, 64, 3),
        include_top=False,
        drop_path_rate=0.0,
        reduction=4,
    )
    assert BABackbone(model).pyramid_level_inputs == {
        "P2": "stage1_0_add2",
        "P3": "stage2_1_add2",
        "P4": "stage3_0_add2",
        "P5": "stage4_0_add2",
    }
