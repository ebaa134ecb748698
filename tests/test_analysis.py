"""`keras_ba.analysis` and `keras-ba analyze`.

Probe, aggregation and importance tests run on every backend; saliency maps
(tf-keras-vis is TensorFlow-only) and the report command run once, in the
TensorFlow pass; the TensorFlow subprocess used by other backends is
checked once, in the JAX pass.
"""

import doctest
import importlib
import json
import os

import keras
import numpy as np
import pytest
from conftest import BACKEND

from keras_ba.analysis import (
    AnalysisError,
    AttentionWeights,
    attention_probe,
    attention_stages,
    attention_weights,
    bridge_importance,
    class_statistics,
    feature_importance,
    find_attention_layers,
    layer_table,
    stage_table,
)
from keras_ba.analysis._examples import tiny_model
from keras_ba.layers import BridgeAttention

TF_ONLY = pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="tf-keras-vis and the report command: covered by the TensorFlow pass",
)

DOC_MODULES = [
    "keras_ba.analysis.errors",
    "keras_ba.analysis._examples",
    "keras_ba.analysis.probe",
    "keras_ba.analysis.stats",
    "keras_ba.analysis.importance",
    "keras_ba.analysis.saliency",
    "keras_ba.analysis.data",
    "keras_ba.analysis.report",
    "keras_ba.cli.analyze",
]


@pytest.mark.parametrize("module_name", DOC_MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(
        module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False
    )
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"


def _images(count, size=16, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (count, size, size, 3)).astype("float32")


def _randomize_norms(model, seed=0):
    """Moving statistics far from (0, 1): inference and training modes then differ."""
    rng = np.random.default_rng(seed)
    for layer in find_attention_layers(model):
        for norm in getattr(layer, "squeeze_norms", []):
            norm.moving_mean.assign(rng.normal(0, 0.5, norm.moving_mean.shape))
            norm.moving_variance.assign(rng.uniform(0.2, 3.0, norm.moving_variance.shape))


def _direct_weights(model, layers, images):
    """Independent path: one sub-model up to the layers' inputs, then each layer itself."""
    probes = keras.Model(model.inputs[0], [layer.input for layer in layers])
    features = probes.predict_on_batch(images)
    weights = {}
    for layer, inputs in zip(layers, features, strict=True):
        inputs = [keras.ops.convert_to_tensor(x) for x in inputs]
        kwargs = {"training": False} if isinstance(layer, BridgeAttention) else {}
        _, scores = layer(inputs, return_attention_scores=True, **kwargs)
        weights[layer.name] = keras.ops.convert_to_numpy(scores)
    return weights


# === Probe ===


def test_probe_weights_equal_the_layer_call_on_a_ba_resnet():
    from keras_ba.training.models import build_model

    # Equal widths: few distinct weight shapes, so few initializer compiles on JAX.
    model = build_model("ba_resnet18", 4, 16, depths=[1, 1, 1, 1], widths=[8, 8, 8, 8])
    _randomize_norms(model)
    images = _images(6)
    result = attention_weights(model, images)
    layers = [x for x in model.layers if isinstance(x, BridgeAttention)]
    assert list(result.layers) == [x.name for x in layers] and len(layers) == 4
    assert [result.stages[n] for n in result.layers] == ["conv2", "conv3", "conv4", "conv5"]
    expected = _direct_weights(model, layers, images)
    for layer in layers:
        weights = result.weights[layer.name]
        assert weights.shape == (6, layer.input[-1].shape[-1])
        assert np.all((weights > 0) & (weights < 1))
        np.testing.assert_allclose(weights, expected[layer.name], atol=1e-5)
    assert result.predictions.shape == (6,) and result.labels is None


@pytest.mark.parametrize("attention", ["se", "bav2"])
def test_probe_weights_equal_the_layer_call(attention):
    model = tiny_model(attention)
    images = _images(5)
    result = attention_weights(model, images)
    assert result.kinds == {n: attention[:2] for n in result.layers}
    layers = [model.get_layer(name) for name in result.layers]
    expected = _direct_weights(model, layers, images)
    for layer in layers:
        weights = result.weights[layer.name]
        assert weights.shape == expected[layer.name].shape == (5, layer.input[-1].shape[-1])
        np.testing.assert_allclose(weights, expected[layer.name], atol=1e-5)
        assert np.all((weights > 0) & (weights < 1))


def test_probe_finds_layers_by_type_in_nested_models():
    inner = tiny_model("bav1")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1.0, name="identity")(inputs)
    outer = keras.Model(inputs, inner(x), name="outer")
    # Rename the attention layers: nothing may depend on their names.
    for index, layer in enumerate(find_attention_layers(inner)):
        layer.name = f"gate{index}"
    images = _images(4)
    nested = attention_weights(outer, images)
    flat = attention_weights(inner, images)
    assert nested.layers == flat.layers == ("gate0", "gate1")
    for name in flat.layers:
        np.testing.assert_allclose(nested.weights[name], flat.weights[name], atol=1e-6)
    # Names do not follow keras_ba patterns: stages come from the resolution.
    assert nested.stages == {"gate0": "stage1", "gate1": "stage2"}


def test_probe_features_pooled_and_squeezed():
    model = tiny_model("bav1")
    _randomize_norms(model)
    images = _images(3)
    result = attention_weights(model, images, features=["pooled", "squeezed"])
    layer = model.get_layer("conv3_block1_ba")
    blocks = keras.Model(model.inputs[0], layer.input).predict_on_batch(images)
    for index, block in enumerate(blocks):
        pooled = np.asarray(block).mean(axis=(1, 2))
        np.testing.assert_allclose(result.pooled[layer.name][index], pooled, atol=1e-5)
        # S_i = BN_i(W_i gap(X_i)) in inference mode, computed with NumPy.
        kernel = keras.ops.convert_to_numpy(layer.squeeze_layers[index].kernel)
        norm = layer.squeeze_norms[index]
        gamma, beta, mean, variance = (
            keras.ops.convert_to_numpy(v)
            for v in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance)
        )
        expected = (pooled @ kernel - mean) / np.sqrt(variance + norm.epsilon) * gamma + beta
        np.testing.assert_allclose(result.squeezed[layer.name][index], expected, atol=1e-4)


def test_probe_model_outputs_and_layer_selection():
    model = tiny_model("bav1")
    probe, names = attention_probe(model, layers=["conv3_block1_ba"])
    assert names == ["conv3_block1_ba"]
    outputs = probe(_images(2))
    assert set(outputs["attention"]) == {"conv3_block1_ba"}


# === Aggregation ===


WEIGHTS = np.array(
    [
        [0.1, 0.9, 0.5],
        [0.3, 0.7, 0.5],
        [0.8, 0.2, 0.4],
        [0.6, 0.4, 0.6],
        [0.7, 0.1, 0.2],
        [0.5, 0.5, 0.5],
    ]
)
LABELS = np.array([3, 3, 1, 1, 1, 7])


def test_class_statistics_against_numpy():
    stats = class_statistics(WEIGHTS, LABELS)
    expected_means = np.array(
        [
            [(0.8 + 0.6 + 0.7) / 3, (0.2 + 0.4 + 0.1) / 3, (0.4 + 0.6 + 0.2) / 3],
            [(0.1 + 0.3) / 2, (0.9 + 0.7) / 2, 0.5],
            [0.5, 0.5, 0.5],
        ]
    )
    assert stats.classes.tolist() == [1, 3, 7] and stats.counts.tolist() == [3, 2, 1]
    np.testing.assert_allclose(stats.class_means, expected_means)
    spread = [
        np.sqrt(np.mean((expected_means[:, c] - expected_means[:, c].mean()) ** 2))
        for c in range(3)
    ]
    np.testing.assert_allclose(stats.spread, spread)
    np.testing.assert_allclose(stats.class_spread, np.mean(spread))
    overall = WEIGHTS.sum(axis=0) / 6
    np.testing.assert_allclose(stats.mean, overall)
    np.testing.assert_allclose(stats.channel_std, np.sqrt(np.mean((overall - overall.mean()) ** 2)))


def test_layer_and_stage_tables_against_numpy():
    other = WEIGHTS[:, ::-1] ** 2
    result = AttentionWeights(
        model_name="m",
        layers=("a", "b", "c"),
        kinds={"a": "ba", "b": "ba", "c": "ba"},
        stages={"a": "conv2", "b": "conv2", "c": "conv3"},
        weights={"a": WEIGHTS, "b": other, "c": WEIGHTS[:, :2]},
        labels=LABELS,
    )
    layers = layer_table(result)
    assert [row["layer"] for row in layers] == ["a", "b", "c"]
    assert [row["channels"] for row in layers] == [3, 3, 2]
    spreads = [class_statistics(w, LABELS).class_spread for w in (WEIGHTS, other, WEIGHTS[:, :2])]
    np.testing.assert_allclose([row["class_spread"] for row in layers], spreads)
    stages = stage_table(result)
    assert [(row["stage"], row["layers"], row["last_layer"]) for row in stages] == [
        ("conv2", 2, "b"),
        ("conv3", 1, "c"),
    ]
    np.testing.assert_allclose(stages[0]["class_spread"], (spreads[0] + spreads[1]) / 2)
    np.testing.assert_allclose(stages[0]["mean_weight"], (WEIGHTS.mean() + other.mean()) / 2)


def test_class_statistics_needs_labels():
    with pytest.raises(AnalysisError, match="need labels"):
        class_statistics(WEIGHTS, None)


def test_stages_from_names_and_resolution():
    model = tiny_model("se")
    layers = find_attention_layers(model)
    assert attention_stages(layers) == {"conv2_block1_se": "conv2", "conv3_block1_se": "conv3"}


# === Bridge importance ===


def _synthetic_block(widths, informative, samples=240, seed=0):
    rng = np.random.default_rng(seed)
    features = [rng.normal(size=(samples, width)) for width in widths]
    signal = features[informative]
    targets = 1 / (1 + np.exp(-np.stack([signal[:, 0] + signal[:, -1], signal[:, 0]], axis=1)))
    return features, targets


@pytest.mark.parametrize("widths, informative", [((4, 4, 4), 0), ((4, 4, 4), 2), ((2, 7, 3), 1)])
def test_feature_importance_finds_the_informative_feature(widths, informative):
    features, targets = _synthetic_block(widths, informative)
    importance = feature_importance(features, targets, n_estimators=20)
    assert importance.shape == (len(widths),)
    assert importance[informative] > 0.8, importance
    np.testing.assert_allclose(importance.sum(), 1.0)
    scaled = feature_importance(features, targets, n_estimators=20, normalize="max")
    np.testing.assert_allclose(scaled, importance / importance.max())


def test_feature_importance_sums_column_groups():
    # Independent of the grouping code: sklearn's per-column importances,
    # summed over each feature's columns by hand.
    from sklearn.ensemble import RandomForestRegressor

    features, targets = _synthetic_block((2, 3, 4), 1, samples=120)
    forest = RandomForestRegressor(n_estimators=10, random_state=3).fit(
        np.concatenate(features, axis=1), targets
    )
    columns = forest.feature_importances_
    expected = np.array([columns[:2].sum(), columns[2:5].sum(), columns[5:].sum()])
    importance = feature_importance(features, targets, n_estimators=10, random_state=3)
    np.testing.assert_allclose(importance, expected / expected.sum())


def test_bridge_importance_on_a_model():
    model = tiny_model("bav1")
    result = bridge_importance(model, _images(24), n_estimators=8)
    assert result.blocks == ("conv2_block1_ba", "conv3_block1_ba")
    assert result.feature_names == ("S1", "S2") and result.matrix.shape == (2, 2)
    np.testing.assert_allclose(result.matrix.sum(axis=1), 1.0)
    assert np.all(result.matrix >= 0) and result.images == 24
    pooled = bridge_importance(model, _images(24), features="pooled", n_estimators=8)
    np.testing.assert_allclose(pooled.matrix.sum(axis=1), 1.0)
    assert [row["block"] for row in result.rows()] == list(result.blocks)


# === Bad input ===


def _plain_model():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="plain")


def test_errors_name_the_problem():
    with pytest.raises(AnalysisError, match="'plain' has no attention layer"):
        attention_weights(_plain_model(), _images(2))
    with pytest.raises(AnalysisError, match="needs BridgeAttention layers.*SqueezeExcite"):
        bridge_importance(tiny_model("se"), _images(4))
    with pytest.raises(AnalysisError, match="has no images"):
        attention_weights(tiny_model("bav1"), np.zeros((0, 16, 16, 3), "float32"))
    with pytest.raises(AnalysisError, match="has no images"):
        attention_weights(tiny_model("bav1"), iter([]))
    with pytest.raises(AnalysisError, match="'conv9_block1_ba' does not exist.*conv2_block1_ba"):
        attention_weights(tiny_model("bav1"), _images(2), layers=["conv9_block1_ba"])
    with pytest.raises(AnalysisError, match="'predictions' is not an attention layer"):
        attention_weights(tiny_model("bav1"), _images(2), layers=["predictions"])
    with pytest.raises(AnalysisError, match="2 images but 3 labels"):
        attention_weights(tiny_model("bav1"), (_images(2), np.zeros(3)))
    with pytest.raises(AnalysisError, match="at least 2 images"):
        bridge_importance(tiny_model("bav1"), _images(1))
    from keras_ba.analysis import explain

    with pytest.raises(AnalysisError, match="Unknown CAM method 'cam'.*gradcam"):
        explain(tiny_model(), _images(1), method="cam")


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the refusal concerns JAX and PyTorch")
def test_explain_refuses_other_backends_with_instructions():
    from keras_ba.analysis import explain

    with pytest.raises(AnalysisError, match="TensorFlow backend only.*explain_file.*KERAS_BACKEND"):
        explain(tiny_model(), _images(1))


@pytest.mark.skipif(
    BACKEND != "torch", reason="the TensorFlow subprocess runs once, in the PyTorch pass"
)
def test_explain_file_runs_tensorflow_in_a_subprocess(tmp_path):
    from keras_ba.analysis import explain_file

    path = str(tmp_path / "tiny.keras")
    tiny_model("bav1").save(path)
    cams = explain_file(path, _images(2), ["gradcam"])
    assert list(cams) == ["gradcam"]
    assert cams["gradcam"].shape == (2, 16, 16) and np.all(np.isfinite(cams["gradcam"]))
    assert cams["gradcam"].min() >= 0 and cams["gradcam"].max() <= 1
    with pytest.raises(AnalysisError, match="subprocess.*Layer 'nope' does not exist"):
        explain_file(path, _images(1), ["gradcam"], layer="nope")


def test_cli_module_defers_heavy_imports():
    """`keras-ba analyze --help` must not wait for Keras: only the standard
    library is imported at the top of the command module."""
    import ast

    import keras_ba.cli.analyze as module

    tree = ast.parse(open(module.__file__).read())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"argparse", "sys"}, imported
    from keras_ba.analysis import CAM_METHODS

    assert module.CAM_METHODS == CAM_METHODS


# === Saliency maps and the report (TensorFlow) ===


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny BA-ResNet trained briefly on 16 px digits, saved as a run folder."""
    if BACKEND != "tensorflow":
        pytest.skip("covered by the TensorFlow pass")
    from keras_ba.analysis.data import eval_transform
    from keras_ba.training import DataSource, load_splits
    from keras_ba.training.models import build_model

    keras.utils.set_random_seed(0)
    splits = load_splits(DataSource("digits"), 16)
    images, labels = zip(*splits.train.as_numpy_iterator(), strict=True)
    x = np.asarray(eval_transform(np.stack(images), 16, 1.0))
    y = keras.utils.to_categorical(np.array(labels), 10)
    model = build_model("ba_resnet18", 10, 16, depths=[1, 1, 1, 1], widths=[8, 16, 32, 64])
    model.compile(keras.optimizers.Adam(3e-3), loss="categorical_crossentropy", jit_compile=False)
    # 640 images (whole batches only: TensorFlow's oneDNN conv gradients crash
    # on odd batch sizes through these ResNets' strided convs on x86 CPUs).
    model.fit(x[:640], y[:640], batch_size=64, epochs=2, verbose=0)
    folder = tmp_path_factory.mktemp("run")
    model.save(folder / "model.keras")
    run = {
        "data": {"data": "digits"},
        "image_size": 16,
        "eval_crop_pct": 1.0,
        "class_names": list(splits.class_names),
    }
    (folder / "run.json").write_text(json.dumps(run))
    return folder, model, x[:4], np.array(labels[:4])


@TF_ONLY
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam", "smoothgrad"])
def test_cams_on_a_trained_digits_model(digits_run, method, tmp_path):
    from PIL import Image

    from keras_ba.analysis import explain, overlay
    from keras_ba.analysis.saliency import save_png

    _, model, images, _ = digits_run
    cams = explain(model, images, method=method, max_n=8, smooth_samples=4)
    assert cams.shape == (4, 16, 16)
    assert np.all(np.isfinite(cams)) and cams.min() >= 0 and cams.max() <= 1
    assert all(cam.std() > 1e-3 for cam in cams), "a constant map"
    display = np.clip((images[0] - images[0].min()) * 60, 0, 255).astype("uint8")
    path = tmp_path / f"{method}.png"
    save_png(path, overlay(display, cams[0]))
    with Image.open(path) as decoded:
        assert decoded.size == (16, 16) and decoded.mode == "RGB"
        assert np.asarray(decoded).std() > 0


def _references(folder):
    from keras_ba.analysis.report import referenced_files

    return referenced_files(os.path.join(folder, "index.html"))


@TF_ONLY
def test_analyze_command_writes_a_complete_report(digits_run, tmp_path, capsys):
    from PIL import Image

    from keras_ba.cli import main

    run, _, _, _ = digits_run
    output = tmp_path / "report"
    args = [
        "analyze",
        str(run),
        "--compare",
        str(run / "model.keras"),
        "--output",
        str(output),
        "--limit",
        "40",
        "--cam-images",
        "3",
        "--methods",
        "gradcam",
        "--trees",
        "4",
        "--no-progress",
    ]
    assert main(args) == 0
    assert "Report:" in capsys.readouterr().out
    references = _references(output)
    assert references and all((output / name).is_file() for name in references)
    for name in (
        "attention_curves.png",
        "bridge_importance.png",
        "explanations.png",
        "overlays/gradcam_0.png",
        "attention_stages.csv",
        "summary.json",
    ):
        assert name in references
    summary = json.loads((output / "summary.json").read_text())
    assert summary["data"]["images"] == 40
    assert [row["stage"] for row in summary["stages"]] == ["conv2", "conv3", "conv4", "conv5"] * 2
    assert {row["model"] for row in summary["stages"]} == {run.name, f"{run.name} (compare)"}
    rows = summary["bridge_importance"][0]["rows"]
    assert len(rows) == 4 and all(abs(row["S1"] + row["S2"] - 1) < 1e-6 for row in rows)
    with Image.open(output / "overlays" / "gradcam_2.png") as image:
        # 16 px inputs shown at 128 px: nearest-neighbour, each input pixel an 8x8 square
        assert image.size == (128, 128)
        pixels = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(pixels, np.repeat(np.repeat(pixels[::8, ::8], 8, 0), 8, 1))
    assert "width:128px" in (output / "index.html").read_text()
    assert summary["model"]["accuracy"] > 0.3
    # A rerun replaces the previous report; no temporary folder remains.
    assert (
        main(
            [
                "analyze",
                str(run),
                "--output",
                str(output),
                "--limit",
                "10",
                "--trees",
                "2",
                "--methods",
                "none",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "explanations.png" not in _references(output)
    assert not (output / "explanations.png").exists()
    assert sorted(os.listdir(tmp_path)) == ["report"]


@TF_ONLY
def test_analyze_bad_input_leaves_nothing(digits_run, tmp_path, capsys, monkeypatch):
    from keras_ba.analysis import analyze, plots
    from keras_ba.cli import main

    run, _, _, _ = digits_run
    plain = tmp_path / "plain.keras"
    _plain_model().save(plain)
    output = tmp_path / "out"
    assert main(["analyze", str(plain), "--data", "digits", "--output", str(output)]) == 1
    assert "has no attention layer" in capsys.readouterr().err
    empty = tmp_path / "empty_images"
    empty.mkdir()
    assert main(["analyze", str(run), "--data", str(empty), "--output", str(output)]) == 1
    assert "empty_images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["analyze", str(run), "--methods", "gradcam,cam"])
    assert "unknown CAM method 'cam'" in capsys.readouterr().err
    with pytest.raises(AnalysisError, match="Unknown CAM method"):
        analyze(str(run), methods=["saliency"], output=str(output))
    # A failure half-way (here: a figure) leaves no folder behind.
    monkeypatch.setattr(plots, "plot_importance", _raise)
    with pytest.raises(RuntimeError, match="disk full"):
        analyze(str(run), output=str(output), limit=20, methods=[], progress=False, n_estimators=4)
    assert sorted(os.listdir(tmp_path)) == ["empty_images", "plain.keras"]
    # An existing folder that is not a report is never replaced without --overwrite.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["analyze", str(run), "--output", str(tmp_path / "mine")]) == 1
    assert "not a previous report" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def _raise(*args, **kwargs):
    raise RuntimeError("disk full")
