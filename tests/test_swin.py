"""BA-Swin: parity with the official Swin, official counts and keys, warm start.

The reference is `fixtures/vit/` (copied from the shared reference folder,
see PROVENANCE.md): the official Swin-T/Swin-S state-dict layouts and
parameter totals, and a reduced official model (64x64, window 4, random
float16 weights) with the logits the official PyTorch code computes in
float64, and its buffers (`relative_position_index`, `attn_mask`).
"""

import json

import keras
import numpy as np
import pytest
from conftest import (
    BACKEND,
    REFERENCE_DIR,
    SHAPES_PASS,
    forward,
    only_in,
    shapes_only,
    trainable_count,
)
from model_contract import run_backbone_contract

from keras_ba.applications import (
    BASwinTransformer,
    BASwinTransformerClassifier,
    BASwinTransformerSmall,
    BASwinTransformerTiny,
    get_model_builder,
)
from keras_ba.applications.swin_layers import SwinWindowAttention, stage_windows
from keras_ba.convert import CheckpointMismatchError, build_key_map, load_torch_weights
from keras_ba.convert.sources import read_state_dict
from keras_ba.layers import BridgeAttention, SqueezeExcite

VIT = REFERENCE_DIR / "vit"
TINY = dict(embed_dim=8, depths=[2, 1], num_heads=[2, 2], window_size=2, reduction=4)


@pytest.fixture(scope="module")
def reduced():
    """The reduced official model: config, float32 state dict, inputs, logits."""
    with np.load(VIT / "parity" / "swin_reduced.npz") as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays["meta"]))
    state = {
        key[2:]: value.astype("float32") if value.dtype == np.float16 else value
        for key, value in arrays.items()
        if key.startswith("w/")
    }
    return dict(
        meta=meta,
        state=state,
        images=arrays["x_nchw"].transpose(0, 2, 3, 1),
        logits=arrays["logits"],
    )


def reduced_model(meta, **kwargs):
    config = meta["config"]
    return BASwinTransformerClassifier(
        config["embed_dim"],
        config["depths"],
        config["num_heads"],
        config["window_size"],
        patch_size=config["patch_size"],
        drop_path_rate=0.0,
        input_shape=(*meta["input_size"], 3),
        classes=meta["num_classes"],
        classifier_activation=None,
        **kwargs,
    )


def window_attention_layers(model):
    return [layer for layer in model.layers if isinstance(layer, SwinWindowAttention)]


def official_prefix(layer_name):
    """`stage2_block1_attn` -> `layers.1.blocks.0` (written here, not the key map's)."""
    stage, block = layer_name.split("_")[:2]
    return f"layers.{int(stage[5:]) - 1}.blocks.{int(block[5:]) - 1}"


# === Parity with the official code ===


def test_reduced_official_model_gives_the_official_logits(reduced):
    meta = reduced["meta"]
    model = reduced_model(meta, attention=None)
    assert trainable_count(model) == meta["total_params"]
    report = load_torch_weights(model, reduced["state"])
    assert report.num_mapped == len(model.weights)
    logits = forward(model, reduced["images"])
    gap = np.abs(logits - reduced["logits"]).max()
    assert gap <= meta["tolerance"], gap

    # Buffers: recomputed by the model, equal to the official ones.
    for layer in window_attention_layers(model):
        prefix = official_prefix(layer.name)
        index = reduced["state"][f"{prefix}.attn.relative_position_index"]
        np.testing.assert_array_equal(layer.relative_position_index, index)
        mask = reduced["state"].get(f"{prefix}.attn_mask")
        assert (layer.attn_mask is None) == (mask is None), layer.name
        if mask is not None:
            np.testing.assert_array_equal(layer.attn_mask, mask)

    # A wrong detail (README's mistakes table) moves the logits past the
    # tolerance: the attention mask left out, then tanh-GELU in the MLPs
    # (eager passes only: on JAX each variant is another whole-model compile).
    if BACKEND == "jax":
        return
    masked = [layer for layer in window_attention_layers(model) if layer.attn_mask is not None]
    stored = [layer.attn_mask for layer in masked]
    for layer in masked:
        layer.attn_mask = None
    assert np.abs(forward(model, reduced["images"]) - reduced["logits"]).max() > 0.1
    for layer, mask in zip(masked, stored, strict=True):
        layer.attn_mask = mask
    for layer in model.layers:
        if layer.name.endswith("_mlp_fc1"):
            layer.activation = lambda x: keras.activations.gelu(x, approximate=True)
    assert np.abs(forward(model, reduced["images"]) - reduced["logits"]).max() > 1e-4


def test_windows_and_shifts_follow_the_official_rule(reduced):
    # README: stage sizes 16, 8, 4, 2 with window 4 -> shifts [0,2], [0,2],
    # [0,0], [0] and windows 4, 4, 4, 2 (stage 4: a 3x3 bias table).
    model = shapes_only(reduced_model, reduced["meta"], attention=None)
    found = {
        layer.name: (
            layer.window_size,
            layer.shift_size,
            tuple(layer.relative_position_bias_table.shape),
        )
        for layer in window_attention_layers(model)
    }
    assert found == {
        "stage1_block1_attn": (4, 0, (49, 2)),
        "stage1_block2_attn": (4, 2, (49, 2)),
        "stage2_block1_attn": (4, 0, (49, 4)),
        "stage2_block2_attn": (4, 2, (49, 4)),
        "stage3_block1_attn": (4, 0, (49, 4)),
        "stage3_block2_attn": (4, 0, (49, 4)),
        "stage4_block1_attn": (2, 0, (9, 8)),
    }
    # Swin-T at 224: stage 4 (7x7) does not shift.
    assert stage_windows((7, 7), 7, 2) == (7, [0, 0])
    assert stage_windows((14, 14), 7, 6) == (7, [0, 3, 0, 3, 0, 3])
    # A non-square input: the rule reads the smaller side.
    wide = shapes_only(BASwinTransformer, **TINY, image_shape=(32, 64, 3))
    assert {k: tuple(v.shape) for k, v in wide.pyramid_outputs.items()} == {
        "P2": (None, 8, 16, 8),
        "P3": (None, 4, 8, 16),
    }


# === Full-size models: official counts and keys ===


@SHAPES_PASS
@pytest.mark.parametrize(
    "builder, name",
    [
        (BASwinTransformerTiny, "swin_tiny_patch4_window7_224"),
        (BASwinTransformerSmall, "swin_small_patch4_window7_224"),
    ],
)
def test_full_size_counts_and_keys_equal_the_official(builder, name):
    with open(VIT / "official_keys" / f"{name}.json") as file:
        official = json.load(file)
    model = shapes_only(builder, attention=None)
    assert trainable_count(model) == official["total_params"]
    buffers = set(official["buffers_in_state_dict"])
    expected = {key: tuple(shape) for key, shape in official["state_dict"] if key not in buffers}
    key_map = build_key_map(model)
    found = {
        key: tuple(target.transform.torch_shape(tuple(target.variable.shape)))
        for key, target in key_map.targets.items()
    }
    assert found == expected
    assert all(key_map.ignore_reason(key) for key in buffers)
    # BA adds only its own layers: one per block, over three features.
    ba = shapes_only(builder)
    ba_layers = [layer for layer in ba.layers if isinstance(layer, BridgeAttention)]
    assert len(ba_layers) == sum(official["config"]["depths"])
    assert trainable_count(ba) > official["total_params"]


@SHAPES_PASS
def test_registry_names_and_trunk_style():
    assert get_model_builder("ba_swin_tiny") is BASwinTransformerTiny
    assert get_model_builder("ba_swin_small") is BASwinTransformerSmall
    with pytest.raises(ValueError, match="only the official PyTorch trunk"):
        BASwinTransformer(**TINY, image_shape=(32, 32, 3), trunk_style="keras")


# === Where the attention goes ===


def _producer(tensor):
    return tensor._keras_history.operation.name


def test_attention_bridges_the_block_and_gates_the_mlp_output():
    tiny = dict(TINY, drop_path_rate=0.0, image_shape=(32, 32, 3))
    model = shapes_only(BASwinTransformer, **tiny)
    layer = model.get_layer("stage1_block2_ba")
    assert isinstance(layer, BridgeAttention) and layer.version == "v2"
    assert [_producer(x) for x in layer.input] == [
        "stage1_block2_attn",
        "stage1_block2_mlp_fc1",
        "stage1_block2_mlp_fc2",
    ]
    add = model.get_layer("stage1_block2_add2")
    assert sorted(_producer(x) for x in add.input) == ["stage1_block2_add1", "stage1_block2_ba"]
    se = shapes_only(BASwinTransformer, **tiny, attention="se")
    layer = se.get_layer("stage2_block1_se")
    assert isinstance(layer, SqueezeExcite)
    assert _producer(layer.input[-1]) == "stage2_block1_mlp_fc2"
    plain = shapes_only(BASwinTransformer, **tiny, attention=None)
    add = plain.get_layer("stage1_block1_add2")
    assert sorted(_producer(x) for x in add.input) == [
        "stage1_block1_add1",
        "stage1_block1_mlp_fc2",
    ]


# === Warm start from the official checkpoint ===


@only_in(
    "tensorflow",
    "torch",
    reason="key matching by name and transpose (the JAX numerics are the parity test's)",
)
def test_trunk_loading_from_an_official_state_dict(reduced):
    state = reduced["state"]  # official layout, random values, buffers included
    model = reduced_model(reduced["meta"], attention="bav2", reduction=4)
    attention = [w for w in model.weights if "_ba/" in w.path]
    before = {w.path: keras.ops.convert_to_numpy(w).copy() for w in attention}

    with pytest.raises(CheckpointMismatchError, match="strict='trunk'"):
        load_torch_weights(model, state)
    report = load_torch_weights(model, {"model": state}, strict="trunk")
    assert report.mode == "trunk"
    assert len(report.mapped) == sum(1 for key in state if not key.endswith(("_index", "_mask")))
    for path, reason in report.not_loaded:
        assert "_ba/" in path and reason == "attention, trunk mode"
    assert any("buffers the model recomputes" in note for note in report.notes)

    # Every trunk weight equals its official tensor (name and transpose here).
    for layer in model.layers:
        if isinstance(layer, SwinWindowAttention):
            prefix = f"{official_prefix(layer.name)}.attn"
            pairs = [
                (layer.qkv.kernel, state[f"{prefix}.qkv.weight"].T),
                (layer.qkv.bias, state[f"{prefix}.qkv.bias"]),
                (layer.proj.kernel, state[f"{prefix}.proj.weight"].T),
                (
                    layer.relative_position_bias_table,
                    state[f"{prefix}.relative_position_bias_table"],
                ),
            ]
        elif layer.name.endswith(("_mlp_fc1", "_mlp_fc2")):
            key = f"{official_prefix(layer.name)}.mlp.fc{layer.name[-1]}"
            pairs = [(layer.kernel, state[f"{key}.weight"].T), (layer.bias, state[f"{key}.bias"])]
        elif layer.name == "patch_embed_proj":
            pairs = [(layer.kernel, state["patch_embed.proj.weight"].transpose(2, 3, 1, 0))]
        elif layer.name.endswith("_merge_reduction"):
            key = f"layers.{int(layer.name[5]) - 1}.downsample.reduction.weight"
            pairs = [(layer.kernel, state[key].T)]
        else:
            continue
        for variable, expected in pairs:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), expected)
    for weight in attention:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), before[weight.path])


def test_checkpoint_containers():
    tensor = np.zeros((2, 2), "float32")
    for wrapped in (
        {"model": {"norm.weight": tensor}},
        {"state_dict": {"module.norm.weight": tensor}},
        {"state_dict_ema": {"norm.weight": tensor}, "epoch": 3},
    ):
        assert list(read_state_dict(wrapped)) == ["norm.weight"]


# === Model contract and errors ===


def test_backbone_contract(tmp_path):
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    run_backbone_contract(
        BASwinTransformer,
        dict(TINY, image_shape=(32, 32, 3)),
        images,
        expected_output_shape=(4, 4, 16),
        expected_pyramid_shapes={"P2": (8, 8, 8), "P3": (4, 4, 16)},
        tmp_path=tmp_path,
        # BAv2's selection bias feeds a BatchNorm, which removes it: no gradient.
        frozen_weights=("selection/bias",),
        jit_compile=BACKEND != "tensorflow",
    )


@only_in("jax", reason="argument checks are backend-independent")
def test_errors_are_clear():
    with pytest.raises(ValueError, match="multiples of 8"):
        BASwinTransformer(**TINY, image_shape=(36, 32, 3))
    with pytest.raises(ValueError, match="does not divide into 3x3 windows"):
        BASwinTransformer(**dict(TINY, window_size=3), image_shape=(48, 40, 3))
    with pytest.raises(ValueError, match="channels_last tokens only"):
        BASwinTransformer(**TINY, image_shape=(32, 32, 3), data_format="channels_first")
    with pytest.raises(ValueError, match="num_heads"):
        BASwinTransformer(**dict(TINY, num_heads=[2]), image_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="shift_size"):
        SwinWindowAttention(num_heads=2, window_size=4, shift_size=4)


@only_in("tensorflow", reason="layer names only; keras-cv's task models are tested in test_cv")
def test_keras_cv_backbone_finds_the_stage_outputs():
    from keras_ba.cv.backbone import BABackbone

    model = shapes_only(
        BASwinTransformerClassifier,
        **dict(TINY, depths=[1, 1]),
        input_shape=(32, 32, 3),
        include_top=False,
    )
    assert BABackbone(model).pyramid_level_inputs == {
        "P2": "stage1_block1_add2",
        "P3": "stage2_block1_add2",
    }


@SHAPES_PASS
def test_convert_cli_accepts_official_checkpoints(tmp_path, capsys):
    from keras_ba.cli import main
    from keras_ba.cli.convert import _checkpoint_classes

    args = ["convert", str(tmp_path / "swin.pth"), "--from", "official", "--arch", "ba_swin_tiny"]
    assert main([*args, "-o", str(tmp_path / "m.keras")]) == 1  # a missing file, not a usage error
    assert "does not exist" in capsys.readouterr().err
    assert _checkpoint_classes({"head.weight": np.zeros((10, 768))}) == 10
