"""BridgeAttention against an independent NumPy computation of SPEC.md."""

import keras
import numpy as np
import pytest
from conftest import BACKEND
from layer_contract import random_inputs, run_layer_contract, to_numpy

from keras_ba.layers import (
    ATTENTION_KWARGS,
    BridgeAttention,
    SqueezeExcite,
    apply_attention,
    attention_names,
    register_attention,
    resolve_attention,
)

EPS = 1e-5


# === Independent NumPy reference (SPEC.md equations) ===


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


NP_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "swish": lambda x: x * np_sigmoid(x),
    "sigmoid": np_sigmoid,
    # PyTorch Hardsigmoid, as in the authors' MobileNetV3 module.
    "hard_sigmoid": lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
}


def np_batch_norm(v, params, training):
    gamma, beta, mean, var = params
    if training:  # batch statistics, biased variance (PyTorch and Keras)
        mean, var = v.mean(axis=0), v.var(axis=0)
    return gamma * (v - mean) / np.sqrt(var + EPS) + beta


def np_pool(x, data_format):
    axes = (
        tuple(range(1, x.ndim - 1)) if data_format == "channels_last" else tuple(range(2, x.ndim))
    )
    return x.astype("float64").mean(axis=axes)


def np_bridge_attention(features, params, version, training, data_format, hidden, gate):
    squeezed = [
        np_pool(f, data_format) @ k for f, k in zip(features, params["squeeze"], strict=True)
    ]
    if version == "v1":
        integrated = sum(
            np_batch_norm(s, bn, training) for s, bn in zip(squeezed, params["norms"], strict=True)
        )
    else:
        kernel, bias = params["selection"]
        integrated = np.stack(squeezed, axis=-1) @ kernel[:, 0] + bias[0]
        integrated = np_batch_norm(integrated, params["norm"], training)
    weights = NP_ACTIVATIONS[gate](NP_ACTIVATIONS[hidden](integrated) @ params["excitation"])
    last = features[-1].astype("float64")
    shape = [last.shape[0]] + [1] * (last.ndim - 1)
    shape[-1 if data_format == "channels_last" else 1] = weights.shape[1]
    return last * weights.reshape(shape), weights


def randomize(layer, seed=0):
    """Sets every variable to random values (BN statistics included) and
    returns them in the reference's structure."""
    rng = np.random.default_rng(seed)

    def fill(variable, positive=False):
        value = rng.normal(size=variable.shape).astype("float32")
        if positive:
            value = np.abs(value) + 0.5
        variable.assign(value)
        return value.astype("float64")

    def bn_params(bn):
        return (fill(bn.gamma), fill(bn.beta), fill(bn.moving_mean), fill(bn.moving_variance, True))

    params = {"squeeze": [fill(d.kernel) for d in layer.squeeze_layers]}
    if layer.version == "v1":
        params["norms"] = [bn_params(bn) for bn in layer.squeeze_norms]
    else:
        params["selection"] = (fill(layer.selection.kernel), fill(layer.selection.bias))
        params["norm"] = bn_params(layer.norm)
    params["excitation"] = fill(layer.excitation.kernel)
    return params


CASES = [
    # (rank label, per-feature shapes without batch, channels_last)
    ("rank3", [(12, 6), (10, 8), (10, 32)]),
    ("rank4", [(8, 8, 16), (4, 4, 16), (4, 4, 64)]),
    ("rank5", [(4, 4, 4, 8), (2, 2, 2, 32)]),
]


def to_channels_first(shape):
    return (shape[-1],) + tuple(shape[:-1])


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_numpy_reference(version, training, data_format, case):
    shapes = case[1]
    if data_format == "channels_first":
        shapes = [to_channels_first(s) for s in shapes]
    features = random_inputs(shapes, batch=5, seed=3)
    layer = BridgeAttention(version=version, reduction=4, data_format=data_format)
    layer.build([(None,) + s for s in shapes])
    params = randomize(layer)
    output, scores = layer(features, training=training, return_attention_scores=True)
    expected, expected_scores = np_bridge_attention(
        features, params, version, training, data_format, "relu", "sigmoid"
    )
    np.testing.assert_allclose(to_numpy(scores), expected_scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(output), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_swish_and_hard_sigmoid_match_reference(version):
    shapes = [(6, 6, 12), (6, 6, 24)]
    features = random_inputs(shapes, batch=3, seed=5)
    layer = BridgeAttention(
        version=version, reduction=6, hidden_activation="swish", gate_activation="hard_sigmoid"
    )
    layer.build([(None,) + s for s in shapes])
    params = randomize(layer, seed=2)
    output = layer(features, training=False)
    expected, _ = np_bridge_attention(
        features, params, version, False, "channels_last", "swish", "hard_sigmoid"
    )
    np.testing.assert_allclose(to_numpy(output), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_training_updates_moving_statistics_with_torch_momentum(version):
    shapes = [(4, 4, 8), (4, 4, 32)]
    features = random_inputs(shapes, batch=6, seed=7)
    layer = BridgeAttention(version=version, reduction=4)
    layer.build([(None,) + s for s in shapes])
    params = randomize(layer)
    norm = layer.squeeze_norms[-1] if version == "v1" else layer.norm
    old_mean = to_numpy(norm.moving_mean)
    layer(features, training=True)
    squeezed = [
        np_pool(f, "channels_last") @ k for f, k in zip(features, params["squeeze"], strict=True)
    ]
    if version == "v1":
        batch_values = squeezed[-1]
    else:
        kernel, bias = params["selection"]
        batch_values = np.stack(squeezed, axis=-1) @ kernel[:, 0] + bias[0]
    # PyTorch momentum 0.1 == Keras momentum 0.9: new = 0.9 old + 0.1 batch.
    expected = 0.9 * old_mean + 0.1 * batch_values.mean(axis=0)
    np.testing.assert_allclose(to_numpy(norm.moving_mean), expected, rtol=1e-4, atol=1e-5)


def test_squeeze_excite_matches_numpy_reference():
    x = random_inputs([(5, 5, 32)], batch=3, seed=9)[0]
    layer = SqueezeExcite(reduction=8, use_bias=True)
    layer.build((None, 5, 5, 32))
    rng = np.random.default_rng(4)
    values = [rng.normal(size=w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(values)
    w1, b1, w2, b2 = [v.astype("float64") for v in values]
    pooled = x.astype("float64").mean(axis=(1, 2))
    weights = np_sigmoid(np.maximum(pooled @ w1 + b1, 0) @ w2 + b2)
    np.testing.assert_allclose(
        to_numpy(layer([x])), x * weights[:, None, None, :], rtol=1e-4, atol=1e-5
    )


def test_squeeze_excite_is_bias_free_by_default():
    layer = SqueezeExcite(reduction=16)
    layer.build((None, 4, 4, 256))
    assert [tuple(w.shape) for w in layer.weights] == [(256, 16), (16, 256)]


# === Layer contract (config, serialization, fit, gradients, .keras) ===


def test_v1_layer_contract(tmp_path):
    # Per feature: squeeze kernel + BN gamma/beta (trainable), BN moving
    # mean/variance (non-trainable); plus the excitation kernel.
    run_layer_contract(
        BridgeAttention,
        {"version": "v1", "reduction": 4},
        [(6, 6, 8), (3, 3, 16), (3, 3, 32)],
        (3, 3, 32),
        expected_num_trainable=3 * 3 + 1,
        expected_num_non_trainable=3 * 2,
        tmp_path=tmp_path,
    )


def test_v2_layer_contract(tmp_path):
    # The selection bias is followed by a BatchNorm in training mode, which
    # removes any constant: its gradient is exactly zero (SPEC.md notes the
    # authors' design cancels it). Every other weight must move.
    run_layer_contract(
        BridgeAttention,
        {"version": "v2", "reduction": 4, "hidden_activation": "swish"},
        [(6, 6, 8), (3, 3, 32)],
        (3, 3, 32),
        expected_num_trainable=2 + 2 + 2 + 1,
        expected_num_non_trainable=2,
        tmp_path=tmp_path,
        frozen_weights=("selection/bias",),
    )


def test_squeeze_excite_contract(tmp_path):
    run_layer_contract(
        SqueezeExcite,
        {"reduction": 4, "use_bias": True},
        [(4, 4, 16)],
        (4, 4, 16),
        expected_num_trainable=4,
        expected_num_non_trainable=0,
        tmp_path=tmp_path,
    )


def test_layer_works_on_unknown_spatial_sizes():
    inputs = [keras.Input((None, None, 8)), keras.Input((None, None, 32))]
    output = BridgeAttention()(inputs)
    model = keras.Model(inputs, output)
    y = to_numpy(model(random_inputs([(7, 5, 8), (3, 2, 32)], batch=2), training=False))
    assert y.shape == (2, 3, 2, 32)


def test_single_feature_reduces_to_bn_squeeze_excitation():
    x = random_inputs([(4, 4, 32)], batch=3)[0]
    layer = BridgeAttention(version="v1", reduction=8)
    layer.build([(None, 4, 4, 32)])
    params = randomize(layer)
    expected, _ = np_bridge_attention([x], params, "v1", False, "channels_last", "relu", "sigmoid")
    np.testing.assert_allclose(to_numpy(layer([x])), expected, rtol=1e-4, atol=1e-5)


# === Precision and compilation ===


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_low_precision(policy):
    shapes = [(4, 4, 16), (4, 4, 64)]
    features = random_inputs(shapes, batch=2)
    reference = BridgeAttention(version="v2")
    reference.build([(None,) + s for s in shapes])
    randomize(reference)
    expected = to_numpy(reference(features))
    keras.config.set_dtype_policy(policy)
    layer = BridgeAttention(version="v2")
    layer.build([(None,) + s for s in shapes])
    layer.set_weights(reference.get_weights())
    assert all(w.dtype == "float32" for w in layer.weights)
    assert all(sub.compute_dtype == layer.compute_dtype for sub in layer.squeeze_layers)
    low = [keras.ops.cast(f, layer.compute_dtype) for f in features]
    output = layer(low)
    assert keras.backend.standardize_dtype(output.dtype) == policy.split("_")[1]
    np.testing.assert_allclose(
        to_numpy(keras.ops.cast(output, "float32")), expected, rtol=0.05, atol=0.05
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_trains_under_jit_compile_and_mixed_bfloat16(version):
    if BACKEND == "torch":
        pytest.skip(
            "budget: under PyTorch jit_compile is torch.compile, whose Dynamo tracing of "
            "Keras' layer machinery takes ~40 s per model on this CPU (~80 s with inductor); "
            "the layer's ops run eagerly in the PyTorch pass and compiled under JAX and TF"
        )
    keras.config.set_dtype_policy("mixed_bfloat16")
    inputs = [keras.Input((None, None, 8)), keras.Input((None, None, 16))]
    x = BridgeAttention(version=version, reduction=4)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(x))
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    data = random_inputs([(6, 6, 8), (6, 6, 16)], batch=8)
    history = model.fit(data, np.ones((8, 1)), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


# === Errors name the problem ===


def test_errors_are_clear():
    x = np.zeros((2, 4, 4, 32), "float32")
    with pytest.raises(ValueError, match="list of the block's feature"):
        BridgeAttention()(x)
    with pytest.raises(ValueError, match="empty list"):
        BridgeAttention().build([])
    with pytest.raises(ValueError, match="different batch sizes"):
        BridgeAttention()([np.zeros((3, 4, 4, 8), "float32"), x])
    with pytest.raises(ValueError, match="rank 3 or more"):
        BridgeAttention()([np.zeros((2, 8), "float32"), x])
    with pytest.raises(ValueError, match="`version`"):
        BridgeAttention(version="v3")
    with pytest.raises(ValueError, match="reduction=64, larger than the 32 channels"):
        BridgeAttention(reduction=64)([x])
    with pytest.raises(ValueError, match="`reduction`"):
        BridgeAttention(reduction=0)
    with pytest.raises(ValueError, match="hidden_activation"):
        BridgeAttention(hidden_activation="not_an_activation")
    with pytest.raises(ValueError, match="data_format"):
        BridgeAttention(data_format="nhwc")
    with pytest.raises(ValueError, match="known channel dimension"):
        BridgeAttention().build([(None, 4, 4, None)])
    with pytest.raises(ValueError, match="larger than the 32 channels"):
        SqueezeExcite(reduction=64)(x)


# === Registry and the placement rule ===


def test_builtin_attention_names():
    assert attention_names()[:3] == ("bav1", "bav2", "se")
    assert ATTENTION_KWARGS == (
        "reduction",
        "hidden_activation",
        "gate_activation",
        "data_format",
        "dtype",
    )


def test_register_attention_refuses_clashes_and_bad_builders():
    before = attention_names()
    with pytest.raises(ValueError, match="'bav1' is already registered"):
        register_attention("bav1", SqueezeExcite)
    with pytest.raises(ValueError, match="`builder`.*Received: builder=3"):
        register_attention("fresh_name", 3)
    with pytest.raises(ValueError, match="`builder`"):
        register_attention("fresh_name", "se")
    with pytest.raises(ValueError, match="`builder`"):
        register_attention("fresh_name", SqueezeExcite(reduction=4))  # an instance
    with pytest.raises(ValueError, match="`builder`"):
        register_attention("fresh_name", int)  # a class, not a Layer
    for name in ("", None, 7, "none", "None", "a.b", "with space"):
        with pytest.raises(ValueError, match="`name`"):
            register_attention(name, SqueezeExcite)
    assert attention_names() == before


def test_resolve_attention_accepts_names_classes_and_callables():
    x = [keras.Input((4, 4, 8)), keras.Input((4, 4, 32))]
    assert resolve_attention(None) is None
    builder, suffix = resolve_attention("bav2")
    assert suffix == "ba" and builder(x, "b_ba", reduction=4).shape == (None, 4, 4, 32)
    builder, suffix = resolve_attention(SqueezeExcite)  # a class, passed through
    assert suffix == "attn"
    builder(x, "b_attn", reduction=8)

    def scale_last(features, name, **kwargs):
        return keras.layers.Rescaling(2.0, name=name)(features[-1])

    builder, suffix = resolve_attention(scale_last)
    assert builder is scale_last and suffix == "attn"
    with pytest.raises(ValueError, match="`attention`.*'cbam'"):
        resolve_attention("cbam")
    with pytest.raises(ValueError, match="pass the class \\(SqueezeExcite\\)"):
        resolve_attention(SqueezeExcite())
    with pytest.raises(ValueError, match="`attention`"):
        resolve_attention(3)


def test_apply_attention_is_one_rule():
    two = [keras.Input((4, 4, 8)), keras.Input((4, 4, 32))]
    one = two[1:]
    calls = []

    def fallback(features, name):
        calls.append(("fallback", len(features), name))
        return features[-1]

    def override(features, name):
        calls.append(("override", len(features), name))
        return features[-1]

    assert apply_attention(two, None, "b", fallback=fallback) is two[-1]
    # Two or more features: the attention over all of them, named by suffix.
    y = apply_attention(two, "bav1", "b", fallback=fallback, reduction=4)
    layer = y._keras_history.operation
    assert isinstance(layer, BridgeAttention) and layer.name == "b_ba"
    assert [t.name for t in layer.input] == [t.name for t in two]
    # One feature: the family's fallback, for any attention.
    apply_attention(one, "bav2", "b", fallback=fallback, reduction=4)
    apply_attention(one, SqueezeExcite, "b", fallback=fallback)
    # A family's own layout for a name wins, whatever the feature count.
    apply_attention(one, "se", "b", fallback=fallback, overrides={"se": override})
    apply_attention(two, "se", "c", fallback=fallback, overrides={"se": override})
    assert calls == [
        ("fallback", 1, "b"),
        ("fallback", 1, "b"),
        ("override", 1, "b_se"),
        ("override", 2, "c_se"),
    ]
    # Without a fallback, one feature gets the attention itself.
    y = apply_attention(one, "se", "d", reduction=8)
    assert isinstance(y._keras_history.operation, SqueezeExcite)


# === Fused paths against the unfused computation ===


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("norms_trainable", [True, False])
def test_fused_v1_integration_equals_one_batch_norm_per_branch(training, norms_trainable):
    """v1's one BatchNorm over the concatenated branches (the default path)
    equals a BatchNormalization layer call per branch, moving statistics
    included, to 1e-6."""
    shapes = [(6, 6, 8), (3, 3, 16), (3, 3, 32)]
    features = random_inputs(shapes, batch=5, seed=11)
    fused, unfused = (BridgeAttention(version="v1", reduction=4) for _ in range(2))
    for layer in (fused, unfused):
        layer.build([(None,) + s for s in shapes])
        randomize(layer, seed=4)
        for norm in layer.squeeze_norms:
            norm.trainable = norms_trainable
    unfused._fusable_norms = lambda: False
    assert fused._fusable_norms()
    out_fused, w_fused = fused(features, training=training, return_attention_scores=True)
    out_plain, w_plain = unfused(features, training=training, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(w_fused), to_numpy(w_plain), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_numpy(out_fused), to_numpy(out_plain), rtol=1e-6, atol=1e-6)
    for a, b in zip(fused.non_trainable_weights, unfused.non_trainable_weights, strict=True):
        assert a.path.split("/")[-2:] == b.path.split("/")[-2:]
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-6, atol=1e-6)


def test_fused_v1_falls_back_when_branch_norms_differ():
    layer = BridgeAttention(version="v1", reduction=4)
    layer.build([(None, 4, 4, 8), (None, 4, 4, 16)])
    assert layer._fusable_norms()
    layer.squeeze_norms[0].trainable = False
    assert not layer._fusable_norms()


def test_fused_v1_keeps_instance_moments_overrides():
    """Synchronised BatchNorm (`--distribute ddp`) replaces `_moments` on each
    layer instance: the branches must then run through their own layers, so
    every override is called and its statistics are the ones used."""
    shapes = [(4, 4, 8), (2, 2, 16)]
    features = random_inputs(shapes, batch=4, seed=3)
    layer = BridgeAttention(version="v1", reduction=4)
    layer.build([(None,) + s for s in shapes])
    calls = []
    for norm in layer.squeeze_norms:

        def moments(inputs, mask, norm=norm):
            calls.append(norm.name)
            # A fixed mean and variance: the output then differs from any
            # computation that uses the batch's own statistics.
            return keras.ops.zeros_like(inputs[0]), keras.ops.ones_like(inputs[0])

        norm.__dict__["_moments"] = moments
    assert not layer._fusable_norms()
    out = layer(features, training=True)
    assert sorted(calls) == sorted(norm.name for norm in layer.squeeze_norms)
    for norm in layer.squeeze_norms:
        norm.__dict__.pop("_moments")
    reference = BridgeAttention.from_config(layer.get_config())
    reference.build([(None,) + s for s in shapes])
    reference.set_weights(layer.get_weights())
    # Each branch normalised with mean 0 and variance 1 is the inference path
    # with those moving statistics.
    for norm in reference.squeeze_norms:
        norm.moving_mean.assign(np.zeros(norm.moving_mean.shape, "float32"))
        norm.moving_variance.assign(np.ones(norm.moving_variance.shape, "float32"))
    np.testing.assert_allclose(
        to_numpy(out), to_numpy(reference(features, training=False)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("use_bias", [False, True])
def test_projection_without_layer_call_equals_dense_call(use_bias):
    from keras_ba.layers._channel_attention import project

    dense = keras.layers.Dense(6, use_bias=use_bias, bias_initializer="random_normal")
    dense.build((None, 10))
    x = random_inputs([(10,)], batch=4, seed=1)[0]
    np.testing.assert_allclose(
        to_numpy(project(dense, x)), to_numpy(dense(x)), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("training", [True, None])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_sum_pooling_equals_mean(data_format, training):
    """Training pools as a scaled sum, inference as `ops.mean`: both are the mean."""
    from keras_ba.layers import _utils

    x = random_inputs([(7, 5, 12)], batch=3, seed=2)[0]
    axes = _utils.spatial_axes(4, data_format)
    np.testing.assert_allclose(
        to_numpy(_utils.global_average(x, data_format, training)),
        x.astype("float64").mean(axis=axes),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_inference_keeps_one_layer_call_per_branch(version):
    """Exported graphs come from inference: there every branch projection and
    (v1) every branch BatchNorm is its own layer call, as before the fused
    training path (one BatchNorm over the concatenation cost int8 accuracy)."""
    shapes = [(4, 4, 8), (2, 2, 16)]
    features = random_inputs(shapes, batch=4, seed=5)
    layer = BridgeAttention(version=version, reduction=4)
    layer.build([(None,) + s for s in shapes])
    calls = []
    sublayers = list(layer.squeeze_layers) + list(getattr(layer, "squeeze_norms", []))
    for sublayer in sublayers:

        def call(*args, _original=sublayer.call, _name=sublayer.name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        sublayer.call = call
    layer(features, training=False)
    assert sorted(calls) == sorted(x.name for x in sublayers)
    calls.clear()
    layer(features, training=True)  # the fused path reads the sublayers' weights
    assert calls == []
