"""BA-RegNetY: timm's derivation, parameter counts and logits; trunk loading; contract.

References (tests/fixtures/regnet, from timm 1.0.31, see its README):
`derivation_cases.json` (widths/depths/groups of every timm RegNet-X/Y
config), `official_keys/*.json` (state-dict layouts, parameter totals),
`parity/regnety_reduced.npz` (a reduced timm RegNet-Y: float16 weights,
photos, float64 logits in eval and train mode). Full-size models are built
shapes-only; data runs through the reduced and tiny models.
"""

import json

import keras
import numpy as np
import pytest
from conftest import (
    REFERENCE_DIR,
    SHAPES_PASS,
    forward,
    only_in,
    shapes_only,
    spec_attention_params,
    trainable_count,
)
from model_contract import (
    check_loads_under_other_backends,
    check_pyramid_shapes,
    randomize_weights,
    run_backbone_contract,
)

from keras_ba.applications import (
    BARegNetY,
    BARegNetY004,
    BARegNetY040,
    BARegNetYBackbone,
    get_model_builder,
    regnety,
)
from keras_ba.applications.regnet_design import REGNETY_CONFIGS, regnet_design, se_widths
from keras_ba.convert import CheckpointMismatchError, build_key_map, load_torch_weights
from keras_ba.convert.regnet_keys import timm_key
from keras_ba.layers import BridgeAttention, SqueezeExcite

FIXTURES = REFERENCE_DIR / "regnet"
PARITY = FIXTURES / "parity" / "regnety_reduced.npz"
REFERENCE_PARAMS = {
    "004": 4_344_144,
    "008": 6_263_168,
    "016": 11_202_430,
    "032": 19_436_338,
    "040": 20_646_656,
}
# The reduced fixture's configuration (README): RegNetCfg(depth=7, w0=16,
# wa=6.0, wm=1.5, group_size=8), 10 classes, 64 x 64 photos.
REDUCED = dict(depth=7, w0=16, wa=6.0, wm=1.5, group_size=8)
TINY = dict(
    stackwise_num_blocks=[1, 1],
    stackwise_num_filters=[16, 24],
    stackwise_group_width=[8, 8],
    stem_filters=8,
)
SIZE = 16


def official(name):
    with open(FIXTURES / "official_keys" / f"{name}.json") as file:
        return json.load(file)


def reduced_model(attention="se", design=None):
    design = design or regnet_design(**REDUCED)
    return BARegNetY(
        design.stage_depths,
        design.stage_widths,
        design.group_widths,
        attention=attention,
        classes=10,
        classifier_activation=None,
        input_shape=(64, 64, 3),
    )


# === Design space: timm's derivation ===


@only_in("jax", reason="pure Python: the derivation does not touch a backend")
def test_derivation_matches_every_reference_case():
    cases = json.loads((FIXTURES / "derivation_cases.json").read_text())["cases"]
    assert len(cases) == 31
    for case in cases:
        assert regnet_design(**case["inputs"])._asdict() == {
            key: case[key] for key in regnet_design(**case["inputs"])._fields
        }, case["name"]
    # The cases can fail: rounding the group step half up (the `_tv` rule
    # without its 90% floor) changes regnety_008 (136/16 = 8.5, 776/16 = 48.5).
    half_up = [int(w / 16 + 0.5) * 16 for w in [56, 136, 320, 776]]
    assert half_up == [64, 144, 320, 784] != regnet_design(**REGNETY_CONFIGS["008"]).stage_widths


@only_in("jax", reason="pure Python: the derivation does not touch a backend")
def test_named_configs_and_se_widths_are_timms():
    for key in REFERENCE_PARAMS:
        reference = official(f"regnety_{key}")
        design = regnet_design(**REGNETY_CONFIGS[key])
        assert design.stage_widths == reference["stage_widths"], key
        assert design.stage_depths == reference["stage_depths"], key
        assert design.groups == reference["groups_per_stage"], key
        assert (
            se_widths(design.stage_widths, design.stage_depths)
            == reference["se_reduced_channels_per_block"]
        ), key
    with pytest.raises(ValueError, match="`w0`"):
        regnet_design(depth=4, w0=20, wa=1.0, wm=2.0, group_size=8)
    with pytest.raises(ValueError, match="`wm`"):
        regnet_design(depth=4, w0=16, wa=1.0, wm=1.0, group_size=8)


# === Full size: parameter counts and the timm layout ===


@SHAPES_PASS
def test_full_size_counts_and_layout_are_timms():
    for key, expected in REFERENCE_PARAMS.items():
        model = shapes_only(regnety.VARIANTS[key], attention="se")
        assert trainable_count(model) == expected, key
        # Every key of timm's state dict, in its shape, and nothing else.
        reference = {
            k: tuple(shape)
            for k, shape in official(f"regnety_{key}")["state_dict"]
            if not k.endswith("num_batches_tracked")
        }
        targets = build_key_map(model).targets
        ours = {
            k: tuple(t.transform.torch_shape(tuple(t.variable.shape))) for k, t in targets.items()
        }
        assert ours == reference, key
    # Bridge Attention adds what SPEC.md's equations give (one model: the
    # counts of every variant are in docs/regnet.md).
    bare = trainable_count(shapes_only(BARegNetY004, attention=None))
    assert REFERENCE_PARAMS["004"] == bare + spec_attention_params(
        shapes_only(BARegNetY004, attention="se")
    )
    for attention in ("bav1", "bav2"):
        model = shapes_only(BARegNetY004, attention=attention)
        assert trainable_count(model) == bare + spec_attention_params(model), attention


def test_named_builders_are_registered_and_shaped():
    for key in REFERENCE_PARAMS:
        assert get_model_builder(f"ba_regnety_{key}") is regnety.VARIANTS[key]
    model = shapes_only(BARegNetY040, include_top=False, input_shape=(224, 224, 3))
    assert model.name == "ba_regnety_040" and model.output_shape == (None, 7, 7, 1088)
    ba = model.get_layer("s1_b1_ba")  # bridges 128, 128, 128; width round(32 / 4)
    assert isinstance(ba, BridgeAttention) and ba.version == "v2" and ba.squeeze_channels == 8
    assert model.get_layer("s4_b2_ba").squeeze_channels == 272  # round(1088 / 4)
    assert model.get_layer("s2_b1_conv2_conv").groups == 3  # 192 / 64
    assert shapes_only(BARegNetY004, classes=10).output_shape == (None, 10)
    assert shapes_only(BARegNetY004, include_top=False, pooling="avg").output_shape == (None, 440)


# === The reduced timm model: logits ===


def test_reduced_fixture_gives_timms_logits():
    fixture = np.load(PARITY)
    state = {k[2:]: fixture[k] for k in fixture.files if k.startswith("w/")}
    state = {k: v.astype("float64") for k, v in state.items() if v.dtype != np.int64}
    model = reduced_model()
    report = load_torch_weights(model, state)  # strict: every key, every shape
    assert report.num_mapped == len(state) == 160
    assert model.get_layer("s1_b1_se").squeeze_channels == 8  # from the block input, 32
    images = np.transpose(fixture["x_nchw"], (0, 2, 3, 1))
    tolerance = json.loads(str(fixture["meta"]))["tolerance"]
    assert tolerance <= 1e-4
    np.testing.assert_allclose(forward(model, images), fixture["logits_eval"], rtol=0, atol=1e-4)
    train = forward(model, images, training=True)
    np.testing.assert_allclose(train, fixture["logits_train"], rtol=0, atol=1e-4)


# === Warm start: a timm / torchvision trunk under Bridge Attention ===

_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean"}
_BN["running_var"] = "moving_variance"


def expected_keras_value(key, value):
    """`(layer, attribute, value)` a timm key must land on, by name and transpose."""
    module, parameter = key.rsplit(".", 1)
    layer = module.replace(".", "_")
    if module == "head.fc":
        return "predictions", "kernel" if parameter == "weight" else "bias", value.T
    if module.endswith(".bn"):
        return layer, _BN[parameter], value
    return layer, "kernel", value.transpose(2, 3, 1, 0)


def random_reference_state(seed=0):
    """The reduced model's timm layout (keys, shapes) with random values."""
    fixture = np.load(PARITY)
    rng = np.random.default_rng(seed)
    state = {}
    for name in fixture.files:
        if name.startswith("w/") and not name.endswith("num_batches_tracked"):
            state[name[2:]] = rng.uniform(0.5, 1.5, fixture[name].shape).astype("float32")
    return state


def torchvision_names(state):
    """timm keys -> torchvision's (the README's renames, inverted here)."""
    modules = {"conv1": "f.a", "conv2": "f.b", "conv3": "f.c", "se": "f.se", "downsample": "proj"}
    parts = {"conv": "0", "bn": "1"}
    renamed = {}
    for key, value in state.items():
        if key.startswith("stem."):
            new = key.replace("stem.conv.", "stem.0.").replace("stem.bn.", "stem.1.")
        elif key.startswith("head.fc."):
            new = key[len("head.") :]
        else:
            stage, block, module, rest = key.split(".", 3)
            i, j = stage[1:], int(block[1:]) - 1
            part, _, parameter = rest.partition(".")
            tail = f"{part}.{parameter}" if module == "se" else f"{parts[part]}.{parameter}"
            new = f"trunk_output.block{i}.block{i}-{j}.{modules[module]}.{tail}"
        renamed[new] = value
    return renamed


@pytest.mark.parametrize("layout", ["timm", "torchvision"])
def test_trunk_loads_under_bridge_attention(layout):
    state = random_reference_state()
    model = reduced_model(attention="bav2")
    attention = [
        w for layer in model.layers if isinstance(layer, BridgeAttention) for w in layer.weights
    ]
    before = {w.path: keras.ops.convert_to_numpy(w).copy() for w in attention}
    source = state if layout == "timm" else torchvision_names(state)
    report = load_torch_weights(model, source, strict="trunk")

    trunk_keys = sorted(k for k in state if ".se." not in k)
    for key in trunk_keys:
        layer, attribute, value = expected_keras_value(key, state[key])
        variable = getattr(model.get_layer(layer), attribute)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value, err_msg=key)
    for weight in attention:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), before[weight.path])
    assert sorted(key for key, _, _ in report.mapped) == trunk_keys
    assert sorted(path for path, _ in report.not_loaded) == sorted(before)
    assert {reason for _, reason in report.not_loaded} == {"attention, trunk mode"}
    se_keys = [k for k in state if ".se." in k]
    assert set(se_keys) <= set(report.skipped) and len(se_keys) == 28
    assert "trunk mode" in str(report)
    if layout == "torchvision":
        assert any("torchvision RegNet" in note for note in report.notes)

    if layout == "timm":
        with pytest.raises(CheckpointMismatchError, match="strict='trunk'"):
            load_torch_weights(reduced_model(attention="bav2"), source, strict=True)


@only_in("jax", reason="key names only")
def test_torchvision_names_map_as_timm_maps_them():
    pairs = official("tv_regnet_y_400mf")["tv_to_timm_key"]
    assert len(pairs) == 384
    assert all(timm_key(tv) == timm for tv, timm in pairs)


# === Tiny model: contract, attention variants, errors ===


def tiny_data(batch=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, SIZE, SIZE, 3)).astype("float32")


def test_backbone_contract(tmp_path):
    # BAv2's selection bias is followed by a BatchNorm in training, which
    # removes any constant: its gradient is exactly zero (SPEC.md).
    backbone, _ = run_backbone_contract(
        BARegNetYBackbone,
        dict(TINY, attention="bav2", image_shape=(SIZE, SIZE, 3)),
        tiny_data(),
        (2, 2, 24),
        {"P1": (8, 8, 8), "P2": (4, 4, 16), "P3": (2, 2, 24)},
        tmp_path,
        frozen_weights=("selection/bias",),
        jit_compile=False,  # XLA on TensorFlow costs ~40 s here (it passes); JAX compiles anyway
    )
    assert backbone.get_layer("s2_b1_conv2_conv").groups == 3


def test_pyramid_in_both_data_formats():
    def build(image_shape, data_format):
        return BARegNetYBackbone(**TINY, image_shape=image_shape, data_format=data_format)

    def expected(size):  # stem stride 2, then each stage halves
        return {"P1": (size // 2, size // 2, 8), "P2": (size // 4, size // 4, 16)} | {
            "P3": (size // 8, size // 8, 24)
        }

    check_pyramid_shapes(build, expected, sizes=(16, 24))


def test_attention_variants_place_their_gate():
    se = shapes_only(BARegNetYBackbone, **TINY, attention="se", image_shape=(SIZE, SIZE, 3))
    gate = se.get_layer("s2_b1_se")  # after the grouped conv, width from the 16-channel input
    assert isinstance(gate, SqueezeExcite) and gate.use_bias and gate.squeeze_channels == 4
    assert gate.input.shape[-1] == 24 and se.get_layer("s2_b1_conv3_conv").input is gate.output
    ba = shapes_only(BARegNetYBackbone, **TINY, attention="bav1", image_shape=(SIZE, SIZE, 3))
    bridge = ba.get_layer("s2_b1_ba")  # gates conv3's BatchNorm output before the add
    assert [x.shape[-1] for x in bridge.input] == [24, 24, 24]
    assert bridge.input[-1] is ba.get_layer("s2_b1_conv3_bn").output
    assert ba.get_layer("s2_b1_add").input[0] is bridge.output
    bare = shapes_only(BARegNetYBackbone, **TINY, attention=None, image_shape=(SIZE, SIZE, 3))
    assert not [layer for layer in bare.layers if layer.name.endswith(("_ba", "_se"))]


@only_in("torch", reason="one cross-backend load is enough: saved by PyTorch, loaded by TensorFlow")
def test_cross_backend_round_trip(tmp_path):
    # Each pass's own `.keras` round trip (safe_mode) is in the contract.
    model = BARegNetY(**TINY, input_shape=(SIZE, SIZE, 3), classes=10)
    check_loads_under_other_backends(model, tiny_data(), tmp_path, targets=["tensorflow"])


# === Dense tasks, command line, benchmark ===


@only_in("tensorflow", reason="keras-hub's task model is backend-independent: one eager pass")
def test_dense_task_head_on_the_backbone():
    keras_hub = pytest.importorskip("keras_hub")
    pytest.importorskip("keras_cv")
    from keras_ba import cv

    four_stages = dict(
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_filters=[16, 24, 32, 56],
        stackwise_group_width=[8, 8, 8, 8],
        stem_filters=8,
    )
    trunk = BARegNetY(**four_stages, include_top=False, input_shape=(64, 64, 3))
    backbone = cv.BABackbone(trunk)  # a classifier trunk: levels found by layer name
    assert backbone.pyramid_level_inputs == {
        "P1": "stem_relu",
        "P2": "s1_b1_out",
        "P3": "s2_b1_out",
        "P4": "s3_b1_out",
        "P5": "s4_b1_out",
    }
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
    masks = forward(segmenter, np.random.default_rng(0).normal(size=(2, 64, 64, 3)))
    assert masks.shape == (2, 64, 64, 3) and np.all(np.isfinite(masks))


@only_in("tensorflow", reason="ONNX is converted from the TensorFlow serving graph")
def test_grouped_convolutions_export_to_onnx(tmp_path):
    # Keras runs a grouped convolution on TensorFlow as an XLA call that
    # tf2onnx cannot read; the export traces it group by group instead.
    pytest.importorskip("tf2onnx")
    import onnx

    from keras_ba.export import onnx as onnx_export
    from keras_ba.export.serving import serving_function

    model = BARegNetY(**TINY, input_shape=(32, 32, 3), classes=5)
    randomize_weights(model)
    path = str(tmp_path / "model.onnx")
    report = onnx_export.write_onnx(model, path, 32, 1.0)
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert "Conv" in ops and "Split" in ops and not [op for op in ops if "Xla" in op], ops
    # ONNX Runtime against the TensorFlow function as Keras runs it (the XLA
    # grouped convolution), on images of other sizes than the check's
    images = np.random.default_rng(1).uniform(0, 255, (3, 40, 36, 3)).astype("float32")
    again = onnx_export.compare(path, serving_function(model, 32, 1.0), [images])
    assert report["max_abs_diff"] < 1e-5 and again["max_abs_diff"] < 1e-5, (report, again)
    assert again["top1_agreement"] == 1.0


@only_in("torch", reason="the command line builds and saves a full-size model: once")
def test_convert_cli_warm_starts_from_a_torchvision_checkpoint(tmp_path, capsys):
    from keras_ba.cli import main

    rng = np.random.default_rng(0)
    state = {
        key: rng.uniform(0.5, 1.5, shape).astype("float32")
        for key, shape in official("tv_regnet_y_400mf")["state_dict"]
        if not key.endswith("num_batches_tracked")
    }
    path = tmp_path / "regnet_y_400mf.npz"
    np.savez(path, **state)
    output = str(tmp_path / "warm.keras")
    argv = ["convert", str(path), "--arch", "ba_regnety_004", "--from", "torchvision"]
    assert main(argv + ["-o", output]) == 0
    printed = capsys.readouterr().out
    assert "trunk mode" in printed and "torchvision RegNet" in printed
    model = keras.saving.load_model(output, safe_mode=True)
    assert model.get_layer("s4_b6_ba").version == "v2"  # the builder's default
    kernel = keras.ops.convert_to_numpy(model.get_layer("s4_b6_conv2_conv").kernel)
    np.testing.assert_array_equal(
        kernel, state["trunk_output.block4.block4-5.f.b.0.weight"].transpose(2, 3, 1, 0)
    )


@only_in("torch", reason="a smoke run of the tool (PyTorch: no compile); no timing is asserted")
def test_speed_benchmark_smoke(capsys):
    import sys

    from conftest import REPO_ROOT

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from benchmarks import regnet_speed

    results = regnet_speed.main(
        ["--families", "regnety-tiny", "--size", "16", "--batch", "2", "--classes", "3"]
        + ["--rounds", "1", "--warmup", "0", "--no-probes", "--quiet"]
    )
    family = results["families"]["regnety-tiny"]
    assert list(family["models"]) == regnet_speed.VARIANTS
    assert family["baselines"] == regnet_speed.BASELINES
    assert "train vs se" in capsys.readouterr().out


def test_errors_are_clear():
    with pytest.raises(ValueError, match="trunk_style='pytorch'"):
        BARegNetYBackbone(**TINY, trunk_style="keras")
    with pytest.raises(ValueError, match="not a multiple of its group width"):
        BARegNetYBackbone([1], [20], [8])
    with pytest.raises(ValueError, match="too small"):
        BARegNetYBackbone(**TINY, image_shape=(4, 4, 3))
    with pytest.raises(ValueError, match="`stackwise_group_width`"):
        BARegNetYBackbone([1, 1], [16, 24], [8])
    with pytest.raises(ValueError, match="`attention`"):
        BARegNetYBackbone(**TINY, attention="ba")
