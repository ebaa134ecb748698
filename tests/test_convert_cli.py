"""`keras-ba convert`: checkpoint in, `.keras` out, fixture logits kept;
`--from torchvision`: an ImageNet trunk under freshly initialised attention."""

import json

import keras
import numpy as np
import pytest
from conftest import REFERENCE_DIR, only_in, run_python

from keras_ba.cli import main

FIXTURE = REFERENCE_DIR / "parity" / "bav2_basic.npz"


@pytest.fixture(scope="module")
def fixture_data():
    with np.load(FIXTURE) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["meta"] = json.loads(str(arrays["meta"]))
    return arrays


@pytest.fixture()
def ddp_checkpoint(tmp_path, fixture_data):
    """The fixture's weights as a DDP-style PyTorch training checkpoint."""
    torch = pytest.importorskip("torch")
    state = {
        f"module.{key[2:]}": torch.from_numpy(value.astype("float32"))
        for key, value in fixture_data.items()
        if key.startswith("w/")
    }
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state, "epoch": 100}, path)
    return path


def _reduced_args(meta):
    return [
        "--arch", "ba_resnet18",
        "--depths", *map(str, meta["depths"]),
        "--widths", *map(str, meta["widths"]),
        "--stem-filters", str(meta["stem"]),
        "--block", meta["block"],
    ]  # fmt: skip


def test_convert_writes_a_keras_file_with_fixture_logits(
    tmp_path, fixture_data, ddp_checkpoint, capsys
):
    output = tmp_path / "model.keras"
    argv = ["convert", str(ddp_checkpoint), *_reduced_args(fixture_data["meta"])]
    argv += ["--classifier-activation", "none", "--list", "-o", str(output)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "mapped 174 tensors" in printed and f"Wrote {output}" in printed
    assert "  layer1.0.ba.proj.weight -> conv2_block1_ba/selection/kernel" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth", "model.keras"]
    model = keras.saving.load_model(output, safe_mode=True)
    assert model.get_layer("conv2_block1_ba").version == "v2"  # detected from the keys
    x = fixture_data["x_eval_nchw"].transpose(0, 2, 3, 1).astype("float32")
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    assert np.max(np.abs(logits - fixture_data["logits_eval"])) < 1e-4


def test_failed_conversion_leaves_no_file(tmp_path, fixture_data, ddp_checkpoint, capsys):
    output = tmp_path / "model.keras"
    argv = ["convert", str(ddp_checkpoint), *_reduced_args(fixture_data["meta"])]
    argv += ["--attention", "bav1", "-o", str(output)]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert "keras-ba convert: error: Cannot load" in error
    assert "attention='bav2'" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]


def test_output_must_be_a_keras_file(tmp_path, capsys):
    assert main(["convert", "c.pth", "--arch", "ba_resnet18", "-o", str(tmp_path / "m.h5")]) == 1
    assert "must end with '.keras'" in capsys.readouterr().err


@only_in(
    "jax",
    reason="a command-line error in a fresh process, the same on every backend: the JAX pass (its processes start fastest)",
)
def test_bad_arch_exits_non_zero(tmp_path, ddp_checkpoint):
    output = tmp_path / "model.keras"
    code = (
        "import sys; from keras_ba.cli import main; "
        f"code = main(['convert', {str(ddp_checkpoint)!r}, '--arch', 'ba_resnet99', "
        f"'-o', {str(output)!r}]); "
        "print('torch imported:', 'torch' in sys.modules); sys.exit(code)"
    )
    result = run_python(code)
    assert result.returncode == 1, result.stderr
    assert "Unknown model name 'ba_resnet99'" in result.stderr
    assert "ba_resnet50" in result.stderr  # the known names are listed
    assert not output.exists()
    assert "torch imported: False" in result.stdout  # PyTorch only to read a .pth file


@pytest.fixture()
def torchvision_checkpoint(tmp_path):
    """A reduced torchvision-layout ResNet (basic blocks) as a hub-style .pth."""
    torch = pytest.importorskip("torch")
    from torchvision_layout import torchvision_resnet

    state = torchvision_resnet([1, 1, 1, 1], "basic", widths=[16, 16, 16, 16], stem=8, classes=7)
    path = tmp_path / "resnet_tiny-0123abcd.pth"
    torch.save({key: torch.from_numpy(value) for key, value in state.items()}, path)
    return path, state


def _tiny_args():
    return ["--arch", "ba_resnet18", "--depths", "1", "1", "1", "1",
            "--widths", "16", "16", "16", "16", "--stem-filters", "8", "--block", "basic"]  # fmt: skip


def test_from_torchvision_loads_the_trunk(tmp_path, torchvision_checkpoint, capsys):
    checkpoint, state = torchvision_checkpoint
    output = tmp_path / "warm.keras"
    argv = ["convert", str(checkpoint), "--from", "torchvision", *_tiny_args()]
    argv += ["--attention", "bav2", "--classes", "3", "--list", "-o", str(output)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "resnet layout in trunk mode" in printed
    assert "not loaded: conv2_block1_ba/" in printed and "(attention, trunk mode)" in printed
    assert "not loaded: predictions/kernel (classifier of another size)" in printed
    model = keras.saving.load_model(output, safe_mode=True)
    assert model.get_layer("conv2_block1_ba").version == "v2" and model.output_shape == (None, 3)
    kernel = keras.ops.convert_to_numpy(model.get_layer("conv3_block1_1_conv").kernel)
    np.testing.assert_array_equal(kernel, state["layer2.0.conv1.weight"].transpose(2, 3, 1, 0))


def test_trunk_checkpoint_without_from_fails_with_a_hint(tmp_path, torchvision_checkpoint, capsys):
    checkpoint, _ = torchvision_checkpoint
    argv = ["convert", str(checkpoint), *_tiny_args(), "--attention", "bav1"]
    assert main(argv + ["-o", str(tmp_path / "m.keras")]) == 1
    assert "--from torchvision" in capsys.readouterr().err
    argv += ["--from", "timm", "--non-strict", "-o", str(tmp_path / "m.keras")]
    assert main(argv) == 1
    assert "--non-strict cannot be combined with --from timm" in capsys.readouterr().err
    assert not (tmp_path / "m.keras").exists()
