"""Private Keras API: one owner (`keras_ba._keras_compat`), and a test that
fails as soon as a Keras release drops what it relies on.

The attribute checks need no computation (they run in one pass); the
functions are exercised on real Keras objects and compared with what the
public API says.
"""

import ast

import keras
import numpy as np
import pytest
from conftest import REPO_ROOT, only_in

from keras_ba import _keras_compat

PACKAGE = REPO_ROOT / "keras_ba"


def _instances():
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.BatchNormalization(name="bn")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(outputs))
    model.compile(loss="mse", optimizer="sgd")
    return {"KerasTensor": outputs, "Model": model, "BatchNormalization": model.get_layer("bn")}


def test_every_private_attribute_still_exists():
    instances = _instances()
    missing = [
        f"{owner}.{name}"
        for owner, names in _keras_compat.PRIVATE_ATTRIBUTES.items()
        for name in names
        if not hasattr(instances[owner], name)
    ]
    assert not missing, f"Keras {keras.__version__} no longer has {missing}: update _keras_compat"


def _private_attributes_used(path):
    """`obj._name` attribute reads in `path`, other than on self/cls/modules of ours."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if (
                node.attr.startswith("__")
                or isinstance(node.value, ast.Name)
                and (
                    node.value.id in ("self", "cls", "os", "sys", "np")
                    or node.value.id.startswith("_")
                )
            ):
                continue
            found.add(node.attr)
    return found


@only_in("jax", reason="reads source files: backend-independent")
def test_keras_internals_are_used_only_in_the_compat_module():
    private = {name for names in _keras_compat.PRIVATE_ATTRIBUTES.values() for name in names}
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(_private_attributes_used(path) & private)
        for path in PACKAGE.rglob("*.py")
        if path.name != "_keras_compat.py"
    }
    assert not {path: names for path, names in offenders.items() if names}


def test_compat_functions_on_real_objects():
    instances = _instances()
    model, bn = instances["Model"], instances["BatchNormalization"]
    assert _keras_compat.producing_layer(instances["KerasTensor"]) is bn
    assert [layer.name for layer in _keras_compat.all_sublayers(model)] == [
        layer.name for layer in model.layers
    ]
    _keras_compat.set_compile_argument(model, "jit_compile", "auto")
    assert model.get_compile_config()["jit_compile"] == "auto"
    assert _keras_compat.reduction_axes(bn) == (0, 1, 2)
    assert not _keras_compat.has_replaced_moments(bn)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    mean, variance = _keras_compat.original_moments(bn)(keras.ops.convert_to_tensor(x), None)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mean), x.mean((0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variance), x.var((0, 1, 2)), atol=1e-5)
    _keras_compat.replace_moments(bn, lambda inputs, mask: (mean * 0, variance * 0 + 1))
    assert _keras_compat.has_replaced_moments(bn)
    out = keras.ops.convert_to_numpy(bn(x, training=True))
    np.testing.assert_allclose(out, x / np.sqrt(1 + bn.epsilon), atol=1e-5)
    _keras_compat.restore_moments(bn)
    assert not _keras_compat.has_replaced_moments(bn)


@pytest.mark.parametrize("training", [True, False])
def test_compute_loss_and_tracker(training):
    model = _instances()["Model"]
    x = np.ones((2, 4, 4, 3), "float32")
    y = np.zeros((2, 3), "float32")
    y_pred = model(x, training=training)
    loss = _keras_compat.compute_loss(model, x, y, y_pred, training=training)
    expected = np.mean(np.square(keras.ops.convert_to_numpy(y_pred)))
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), expected, rtol=1e-5)
    tracker = _keras_compat.loss_tracker(model)
    tracker.update_state(loss, sample_weight=2)
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(tracker.result())), expected, rtol=1e-5
    )
