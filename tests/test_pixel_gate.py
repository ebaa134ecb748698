"""`PixelGate`: the unpooled gate of the authors' first MBConv block."""

import keras
import numpy as np
import pytest
from layer_contract import random_inputs, run_layer_contract, to_numpy

from keras_ba.convert import transforms
from keras_ba.layers import PixelGate, SqueezeExcite


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def randomize(layer, seed=4):
    rng = np.random.default_rng(seed)
    values = [rng.normal(size=w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(values)
    return [v.astype("float64") for v in values]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_numpy_reference(data_format):
    x = random_inputs([(5, 6, 32)], batch=3, seed=9)[0]  # channels_last
    layer = PixelGate(reduction=4, data_format=data_format)
    layer.build((None, 5, 6, 32) if data_format == "channels_last" else (None, 32, 5, 6))
    w1, b1, w2, b2 = randomize(layer)
    hidden = x.astype("float64") @ w1 + b1
    weights = np_sigmoid((hidden * np_sigmoid(hidden)) @ w2 + b2)  # per pixel, no pooling
    expected = x * weights
    if data_format == "channels_first":
        output = to_numpy(layer(x.transpose(0, 3, 1, 2))).transpose(0, 2, 3, 1)
    else:
        output = to_numpy(layer([x]))
    np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-5)
    # Different pixels get different channel weights: not a pooled gate.
    assert np.abs(weights[:, 0, 0] - weights[:, 1, 1]).max() > 1e-3


def test_matches_the_authors_conv_module_through_the_converter_transform():
    """Conv1x1 -> Swish -> Conv1x1 -> Sigmoid, x * att(x), in PyTorch."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 16, 6, 6)).astype("float32")  # NCHW
    w1, b1 = rng.normal(size=(4, 16, 1, 1)).astype("float32"), rng.normal(size=4).astype("float32")
    w2, b2 = rng.normal(size=(16, 4, 1, 1)).astype("float32"), rng.normal(size=16).astype("float32")
    t = torch.from_numpy
    att = torch.sigmoid(
        functional.conv2d(functional.silu(functional.conv2d(t(x), t(w1), t(b1))), t(w2), t(b2))
    )
    expected = (t(x) * att).numpy().transpose(0, 2, 3, 1)
    layer = PixelGate(squeeze_channels=4)
    layer.build((None, 6, 6, 16))
    layer.squeeze.kernel.assign(transforms.POINTWISE_TO_DENSE(w1, layer.squeeze.kernel.shape))
    layer.squeeze.bias.assign(b1)
    layer.excitation.kernel.assign(transforms.POINTWISE_TO_DENSE(w2, layer.excitation.kernel.shape))
    layer.excitation.bias.assign(b2)
    np.testing.assert_allclose(
        to_numpy(layer(x.transpose(0, 2, 3, 1))), expected, rtol=1e-4, atol=1e-5
    )


def test_same_weights_as_squeeze_excite_but_another_function():
    x = random_inputs([(4, 4, 16)], batch=2)[0]
    gate, se = (
        PixelGate(reduction=4),
        SqueezeExcite(reduction=4, use_bias=True, hidden_activation="swish"),
    )
    gate.build(x.shape)
    se.build(x.shape)
    assert [tuple(w.shape) for w in gate.weights] == [tuple(w.shape) for w in se.weights]
    se.set_weights([np.asarray(v) for v in randomize(gate)])
    assert np.abs(to_numpy(gate(x)) - to_numpy(se(x))).max() > 1e-3


def test_defaults_and_attention_scores():
    layer = PixelGate()
    config = layer.get_config()
    assert (config["reduction"], config["hidden_activation"], config["gate_activation"]) == (
        4,
        "swish",
        "sigmoid",
    )
    assert config["use_bias"] is True
    x = random_inputs([(3, 3, 8)], batch=2)[0]
    output, scores = layer(x, return_attention_scores=True)
    assert tuple(scores.shape) == (2, 3, 3, 8)
    np.testing.assert_allclose(to_numpy(output), x * to_numpy(scores), rtol=1e-5, atol=1e-6)
    symbolic, symbolic_scores = PixelGate()(
        keras.Input((None, None, 8)), return_attention_scores=True
    )
    assert tuple(symbolic.shape) == tuple(symbolic_scores.shape) == (None, None, None, 8)


def test_layer_contract(tmp_path):
    run_layer_contract(
        PixelGate,
        {"squeeze_channels": 4},
        [(4, 4, 16)],
        (4, 4, 16),
        expected_num_trainable=4,
        expected_num_non_trainable=0,
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_low_precision(policy):
    keras.config.set_dtype_policy(policy)
    layer = PixelGate(reduction=4)
    output = layer(keras.ops.cast(random_inputs([(4, 4, 16)], batch=2)[0], layer.compute_dtype))
    assert layer.squeeze.compute_dtype == layer.excitation.compute_dtype == policy.split("_")[1]
    assert keras.backend.standardize_dtype(output.dtype) == policy.split("_")[1]
    assert all(w.dtype == "float32" for w in layer.weights)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="reduction=64, larger than the 32 channels"):
        PixelGate(reduction=64)(np.zeros((1, 2, 2, 32), "float32"))
    with pytest.raises(ValueError, match="`squeeze_channels`"):
        PixelGate(squeeze_channels=0)
    with pytest.raises(ValueError, match="data_format"):
        PixelGate(data_format="nhwc")
