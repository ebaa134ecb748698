"""The speed benchmark (benchmarks/) runs and reports what it promises.

Smoke tests on a tiny model: the tables have their columns and every ratio is
finite and positive; the fresh-process probe measures start-up and memory;
the plain-PyTorch yardstick is the authors' BA-ResNet (their state-dict
layout and their logits) and computes the same function as keras_ba. No
timing is asserted: speed is measured by `python -m benchmarks.speed`, not in
tests.
"""

import doctest
import importlib.util
import json
import math
import re
import sys

import numpy as np
import pytest
from conftest import BACKEND, REFERENCE_DIR, REPO_ROOT, official_keys

if str(REPO_ROOT) not in sys.path:  # benchmarks/ is not installed with keras_ba
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import models, probe, speed  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
TORCH_ONLY = pytest.mark.skipif(
    BACKEND != "torch" or not HAS_TORCH,
    reason="PyTorch yardstick: runs in the torch pass (plain PyTorch, or keras_ba under torch)",
)
ONE_PASS = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="backend-independent: covered by the tensorflow pass"
)
TINY = ["--families", "resnet-tiny", "--size", "32", "--batch", "2", "--classes", "5"]
RATIO_CELL = re.compile(r"^(\S+) \((\S+)–(\S+)\)$")


def _table(output, columns):
    """Rows (lists of cells) of the markdown table whose header is `columns`."""
    lines = output.splitlines()
    header = "| " + " | ".join(columns) + " |"
    assert header in lines, f"no table with columns {columns} in:\n{output}"
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _positive_finite(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.skipif(
    BACKEND != "torch",
    reason="budget: the timing loop is Keras' API on every backend; the torch pass runs it "
    "with the plain-PyTorch yardstick (the probes' per-backend measures are tested apart)",
)
def test_speed_smoke_table_and_json(tmp_path, capsys):
    variants = ["none", "bav1"]
    baselines = ["none", "bav1"]  # two baselines: every model has a self and an other ratio
    extra = ["--torch-reference"] if BACKEND == "torch" and HAS_TORCH else []
    path = tmp_path / "out" / "speed.json"
    argv = TINY + ["--variants", *variants, "--baselines", *baselines]
    argv += ["--rounds", "2", "--warmup", "1", "--no-probes"]
    speed.main(argv + ["--quiet", "--json", str(path)] + extra)
    output = capsys.readouterr().out

    written = json.loads(path.read_text())
    family = written["families"]["resnet-tiny"]
    expected_models = variants + (speed.TORCH_REFERENCE_VARIANTS if extra else [])
    assert list(family["models"]) == expected_models
    baselines += ["torch-bav1"] if extra else []
    assert family["baselines"] == baselines

    rows = _table(output, speed.timing_columns(baselines))
    assert [row[0] for row in rows] == [family["models"][m]["label"] for m in expected_models]
    for row in rows:
        assert len(row) == len(speed.timing_columns(baselines))
        assert float(row[3]) > 0 and float(row[4]) > 0  # train ms, infer ms
        for cell in row[5:]:
            match = RATIO_CELL.match(cell)
            assert cell == "—" or match, cell
            if match:
                assert all(_positive_finite(float(v)) for v in match.groups()), cell

    for phase in ("train", "infer"):
        ratios = family["ratios"][phase]
        assert set(ratios) == set(expected_models)
        for model_name, row in ratios.items():
            assert set(row) == set(baselines)
            for summary in row.values():
                assert len(summary["rounds"]) == 2
                for key in ("median", "p25", "p75", "min", "max"):
                    assert _positive_finite(summary[key]), (model_name, summary)
                assert summary["min"] <= summary["median"] <= summary["max"]
        for model_name in expected_models:
            assert len(family["models"][model_name][f"{phase}_ms"]["rounds"]) == 2
    if extra:  # the yardstick was loaded with keras_ba's weights and checked
        for name in ("bav1", "bav1:cf"):
            assert family["torch_check"][name]["max_abs_diff"] < 1e-4
    assert written["config"]["precision"] == "float32"


def _tiny_probe_spec(variant):
    return {
        "family": "resnet-tiny",
        "variant": variant,
        "size": 32,
        "batch": 2,
        "classes": 5,
        "precision": "float32",
        "jit_compile": "auto",
        "device": "cpu",
        "memory_steps": 1,
    }


def _state_bytes(result):
    """Weights plus SGD momenta in float32: a lower bound of any train-step peak."""
    return 2 * 4 * result["params"]


@pytest.mark.skipif(
    BACKEND == "tensorflow", reason="the tensorflow pass runs the probe in a fresh process instead"
)
def test_probe_measures_startup_and_memory():
    result = probe.probe(_tiny_probe_spec("bav1"))  # in this process: the code path, per backend
    assert result["backend"] == BACKEND
    for key in ("build_s", "first_step_s", "startup_s"):
        assert _positive_finite(result[key]), result
    assert math.isfinite(result["first_loss"])
    if result["rss_peak_bytes"] is not None:
        assert result["rss_peak_bytes"] >= 0
    if BACKEND == "jax":  # XLA's buffer assignment holds at least weights and momenta
        assert result["xla_peak_bytes"] >= _state_bytes(result)
    else:
        assert result["xla_peak_bytes"] is None


@ONE_PASS
def test_probe_in_a_fresh_process():
    config = {
        key: value
        for key, value in _tiny_probe_spec("none").items()
        if key not in ("family", "variant")
    }
    result = speed.run_probe("resnet-tiny", "none", config | {"probe_repeats": 1}, "tensorflow")
    assert result["variant"] == "none" and result["backend"] == "tensorflow"
    assert result["jit_compile"] in (True, False)
    assert _positive_finite(result["import_s"]) and _positive_finite(result["startup_s"])
    # TensorFlow's CPU allocator statistics are on in the child (BFC allocator).
    assert result["allocator_peak_bytes"] >= _state_bytes(result)


@ONE_PASS
def test_pure_helpers_and_errors(tmp_path):
    summary = speed.ratio_summary([2.0, 4.0, 6.0], [1.0, 2.0, 2.0])  # ratios 2, 2, 3
    assert summary["rounds"] == [2.0, 2.0, 3.0]
    assert (summary["median"], summary["p25"], summary["p75"]) == (2.0, 2.0, 2.5)
    assert (summary["min"], summary["max"]) == (2.0, 3.0)
    with pytest.raises(ValueError, match="same non-zero number of rounds"):
        speed.ratio_summary([1.0], [1.0, 2.0])
    assert speed.rotated([1, 2, 3], 1) == [2, 3, 1]
    assert models.parse_variant("torch-bav1:cl").data_format == "channels_last"
    with pytest.raises(ValueError, match="unknown variant 'bav3'"):
        models.parse_variant("bav3")
    with pytest.raises(ValueError, match="unknown suffix"):
        models.parse_variant("bav1:nhwc")
    with pytest.raises(SystemExit):  # argparse: a baseline that is not measured
        speed.main(TINY + ["--variants", "none", "--baselines", "se"])
    with pytest.raises(SystemExit):
        speed.main(TINY + ["--rounds", "0"])
    path = tmp_path / "r.json"
    speed.write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind


@ONE_PASS
def test_docstring_examples_of_the_tool():
    for module in (speed, models):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


@pytest.mark.skipif(
    BACKEND == "torch", reason="under torch the smoke test runs the torch-reference path"
)
def test_torch_reference_needs_the_torch_backend(capsys):
    with pytest.raises(SystemExit):
        speed.main(TINY + ["--variants", "bav1", "--torch-reference", "--no-probes", "--quiet"])
    assert "KERAS_BACKEND=torch" in capsys.readouterr().err


# === The plain-PyTorch yardstick ===


@TORCH_ONLY
def test_yardstick_has_the_authors_state_dict_layout():
    from benchmarks.torch_reference import TorchBAResNet

    for attention, name in (("bav1", "bav1_resnet50"), ("se", "se_resnet50")):
        net = TorchBAResNet(attention=attention)
        layout = [[key, list(value.shape)] for key, value in net.state_dict().items()]
        reference = official_keys(name)
        assert layout == reference["state_dict"], name
        assert sum(p.numel() for p in net.parameters()) == reference["total_params"]


@TORCH_ONLY
def test_yardstick_reproduces_the_authors_logits():
    import torch

    from benchmarks.torch_reference import TorchBAResNet

    fixture = np.load(REFERENCE_DIR / "parity" / "bav1_bottleneck.npz")
    meta = json.loads(str(fixture["meta"]))
    net = TorchBAResNet(
        depths=meta["depths"],
        widths=meta["widths"],
        stem_filters=meta["stem"],
        classes=meta["num_classes"],
        reduction=meta["reduction"],
    )
    state = {
        k[2:]: torch.from_numpy(fixture[k].astype("float32"))
        for k in fixture.files
        if k[:2] == "w/"
    }
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert unexpected == [] and all(k.endswith("num_batches_tracked") for k in missing)
    with torch.no_grad():
        eval_logits = net.eval()(torch.from_numpy(fixture["x_eval_nchw"].astype("float32")))
        train_logits = net.train()(torch.from_numpy(fixture["x_train_nchw"].astype("float32")))
    np.testing.assert_allclose(eval_logits.numpy(), fixture["logits_eval"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(train_logits.numpy(), fixture["logits_train"], atol=1e-4, rtol=0)


@TORCH_ONLY
@pytest.mark.parametrize("variant", ["bav1", "bav1:cf", "se", "none"])
def test_yardstick_equals_keras_ba(variant):
    import keras
    import torch

    from benchmarks.torch_reference import calibrate_batchnorm, numpy_state_dict
    from keras_ba.convert import load_torch_weights

    family = models.FAMILIES["resnet-tiny"]
    spec = models.parse_variant(variant)
    twin = models.parse_variant("torch-" + (spec.attention or "none"))
    torch.manual_seed(0)
    net = models.build_torch(family, twin, 5)
    images = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype("float32")
    nchw = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    calibrate_batchnorm(net, nchw, perturb=0.2)  # eval mode differs from batch statistics
    model = models.build_keras(family, spec, 32, 5)
    load_torch_weights(model, numpy_state_dict(net))
    x = images if spec.data_format == "channels_last" else images.transpose(0, 3, 1, 2)
    with torch.no_grad():
        expected_eval = net.eval()(nchw).numpy()
        expected_train = net.train()(nchw).numpy()
    got_eval = keras.ops.convert_to_numpy(model(x, training=False))
    got_train = keras.ops.convert_to_numpy(model(x, training=True))
    assert np.abs(expected_eval - expected_train).max() > 1e-2  # the two modes differ
    np.testing.assert_allclose(got_eval, expected_eval, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_train, expected_train, atol=1e-4, rtol=0)


@TORCH_ONLY
def test_yardstick_docstring_examples():
    from benchmarks import torch_reference

    result = doctest.testmod(torch_reference, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@TORCH_ONLY
def test_torch_profile_smoke(capsys):
    """The profile table: one row per model, per-group times that add up."""
    from benchmarks import torch_profile

    assert doctest.testmod(torch_profile).failed == 0
    torch_profile.main(["--family", "resnet-tiny", "--size", "32", "--batch", "2", "--steps", "1"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:3] == ["", "wall", "convolution"] and header[-2:] == [
        "all operators",
        "outside operators",
    ]
    rows = {line.split("|")[1].strip(): line for line in lines[1:]}
    assert sorted(rows) == ["keras_ba channels_first", "keras_ba channels_last", "plain PyTorch"]
    for line in rows.values():
        numbers = [float(cell) for cell in line.strip("|").split("|")[1:]]
        wall, groups, inside, outside = numbers[0], numbers[1:-2], numbers[-2], numbers[-1]
        assert all(math.isfinite(x) and x >= 0 for x in [wall, *groups, inside])
        assert groups[0] > 0  # the convolutions were seen
        assert abs(sum(groups) - inside) <= len(groups)  # rounding of the cells
        assert abs(wall - inside - outside) <= 1
