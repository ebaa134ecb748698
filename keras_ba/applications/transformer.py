"""Pieces shared by the BA vision transformers (Swin, PVT, CSWin).

A transformer block is `x + attention_branch(LN1(x))` followed by
`x + MLP(LN2(x))`. Each family computes its own attention branch (window
attention, spatial-reduction attention, cross-shaped windows); the rest of
the block is `residual_mlp` here, and with it the one rule for where Bridge
Attention sits in a transformer block (our design, not the authors'; they
published BA for CNNs only):

- The block's "layers" are its internal outputs: the attention branch after
  its output projection, the MLP's hidden activation (after GELU) and the
  MLP's output.
- Each is pooled over the tokens (a rank-3 `(batch, tokens, channels)` or a
  channels_last `(batch, height, width, channels)` tensor; the mean over
  every axis but batch and channels is the same either way) and bridged by
  `keras_ba.layers.BridgeAttention`.
- The gate multiplies the MLP's output before drop-path and the residual
  add: `x + drop_path(MLP(LN2(x)) * w)`.

`attention="se"` puts squeeze-and-excitation on the MLP output at the same
spot (the authors' `se_swin_tiny` baseline); `attention=None` is the
official block. LayerNorms use PyTorch's epsilon 1e-5 (Keras' default 1e-3
moves the official logits by ~0.7), GELU is the exact erf form.

Example:
>>> import keras
>>> attend = attention_builder("bav2", reduction=4)
>>> x = keras.Input((16, 8))
>>> branch = keras.layers.Dense(8, name="blk_attn_proj")(layer_norm("blk_norm1")(x))
>>> y = residual_mlp(x, branch, mlp_ratio=4, attend=attend, name="blk")
>>> tuple(y.shape), y._keras_history.operation.name
((None, 16, 8), 'blk_add2')
"""

import functools

import keras
import numpy as np
from keras import layers, ops

from keras_ba.layers.registry import apply_attention

LAYER_NORM_EPSILON = 1e-5  # PyTorch's nn.LayerNorm default, used by all three families
TRUNK_STYLES = ("pytorch",)
INIT_STDDEV = 0.02  # the official trunc_normal_(std=0.02) of Linear weights and bias tables


@keras.saving.register_keras_serializable(package="keras_ba")
class HostNormal(keras.initializers.Initializer):
    """N(0, stddev²) drawn by NumPy on the host: the transformers' Linear init.

    The official `trunc_normal_(w, std=0.02)` truncates at ±2 in absolute
    value, i.e. at ±100 standard deviations: in effect a plain normal.
    Drawing it with NumPy costs no compiled program per weight shape (on JAX
    every shape of a random initializer is an XLA compile, and a Swin has
    dozens of shapes). `keras.utils.set_random_seed` seeds it (through
    NumPy's global state) unless `seed` is given.

    Args:
        stddev: standard deviation.
        seed: optional integer seed.

    Example:
    >>> values = HostNormal(0.02, seed=0)((1000, 8))
    >>> round(float(keras.ops.std(values)), 2)
    0.02
    """

    def __init__(self, stddev=INIT_STDDEV, seed=None):
        self.stddev = stddev
        self.seed = seed

    def __call__(self, shape, dtype=None):
        seed = self.seed if self.seed is not None else np.random.randint(2**31 - 1)
        values = np.random.default_rng(seed).normal(0.0, self.stddev, size=tuple(shape))
        return ops.convert_to_tensor(values, dtype=dtype or keras.config.floatx())

    def get_config(self):
        return {"stddev": self.stddev, "seed": self.seed}


def dense_init():
    """A fresh `HostNormal(0.02)` for one Linear weight (the official init).

    Example:
    >>> dense_init().stddev
    0.02
    """
    return HostNormal(INIT_STDDEV)


def check_trunk_style(trunk_style, family):
    """Transformers have one trunk style, the official PyTorch one.

    Example:
    >>> check_trunk_style("pytorch", "Swin")
    'pytorch'
    """
    if trunk_style != "pytorch":
        raise ValueError(
            f"Received trunk_style={trunk_style!r}: {family} has only the official "
            "PyTorch trunk; pass trunk_style='pytorch'."
        )
    return trunk_style


def check_channels_last(data_format, family):
    """Transformers compute on channels_last tokens: None or "channels_last".

    Example:
    >>> check_channels_last(None, "Swin")
    'channels_last'
    """
    if data_format not in (None, "channels_last"):
        raise ValueError(
            f"Received data_format={data_format!r}: {family} works on channels_last "
            "tokens only; pass data_format=None or 'channels_last'."
        )
    return "channels_last"


def layer_norm(name, dtype=None, epsilon=LAYER_NORM_EPSILON):
    """A LayerNormalization over the last axis with PyTorch's epsilon.

    Example:
    >>> layer_norm("norm").epsilon
    1e-05
    """
    return layers.LayerNormalization(epsilon=epsilon, name=name, dtype=dtype)


def drop_path(x, rate, name, dtype=None):
    """Stochastic depth: drops the whole residual branch per sample.

    A `Dropout` whose noise is shared by every axis but the batch (it
    scales the kept samples by `1 / (1 - rate)`, like timm's `DropPath`).
    Returns `x` unchanged for `rate == 0`.

    Example:
    >>> import keras
    >>> drop_path(keras.Input((4, 8)), 0.1, "blk_drop").name.startswith("keras_tensor")
    True
    """
    if not rate:
        return x
    noise_shape = (None,) + (1,) * (len(x.shape) - 1)
    return layers.Dropout(rate, noise_shape=noise_shape, dtype=dtype, name=name)(x)


def drop_path_rates(depths, rate):
    """timm's linear stochastic-depth schedule: 0 ... `rate` over all blocks.

    Returns:
        One list of rates per stage.

    Example:
    >>> drop_path_rates([2, 1], 0.2)
    [[0.0, 0.1], [0.2]]
    """
    total = sum(depths)
    rates = [rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
    out, begin = [], 0
    for depth in depths:
        out.append(rates[begin : begin + depth])
        begin += depth
    return out


@keras.saving.register_keras_serializable(package="keras_ba")
def gelu_erf(x):
    """Exact GELU, `x * Φ(x) = 0.5 x (1 + erf(x / √2))` (PyTorch's `nn.GELU()`).

    The same function as `keras.activations.gelu(x, approximate=False)`,
    written with `erf`: TensorFlow's own exact GELU uses `Erfc`, which the
    ONNX converter cannot express.

    Example:
    >>> [round(float(v), 4) for v in gelu_erf(keras.ops.convert_to_tensor([-1.0, 0.0, 2.0]))]
    [-0.1587, 0.0, 1.9545]
    """
    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


def mlp(x, hidden_units, name, dtype=None, out_units=None):
    """Linear -> exact GELU -> Linear, as in the official transformers.

    Args:
        x: tokens, channels last.
        hidden_units: width of the hidden layer (`mlp_ratio * C`).
        name: prefix; the layers are `{name}_fc1` and `{name}_fc2`.
        dtype: dtype policy of the layers.
        out_units: output width (default: the input width).

    Returns:
        `(hidden, output)`: the activated hidden tokens and the output.

    Example:
    >>> import keras
    >>> hidden, out = mlp(keras.Input((5, 8)), 32, "blk_mlp")
    >>> tuple(hidden.shape), tuple(out.shape)
    ((None, 5, 32), (None, 5, 8))
    """
    out_units = out_units or x.shape[-1]
    hidden = layers.Dense(
        hidden_units,
        activation=gelu_erf,
        kernel_initializer=dense_init(),
        dtype=dtype,
        name=f"{name}_fc1",
    )(x)
    output = layers.Dense(
        out_units, kernel_initializer=dense_init(), dtype=dtype, name=f"{name}_fc2"
    )
    return hidden, output(hidden)


def attention_builder(
    attention, reduction=16, hidden_activation="relu", gate_activation="sigmoid", dtype=None
):
    """`attend(features, name=...)` for the transformer blocks.

    A partial of `keras_ba.layers.apply_attention` on channels_last tokens:
    Bridge Attention over all features, SE (or another registered module)
    on the last, None returns the last unchanged.

    Example:
    >>> import keras
    >>> attend = attention_builder("se", reduction=4)
    >>> y = attend([keras.Input((5, 8)), keras.Input((5, 8))], name="blk")
    >>> y._keras_history.operation.name
    'blk_se'
    """
    return functools.partial(
        apply_attention,
        attention=attention,
        reduction=reduction,
        hidden_activation=hidden_activation,
        gate_activation=gate_activation,
        data_format="channels_last",
        dtype=dtype,
    )


def residual_mlp(
    x,
    branch,
    *,
    mlp_ratio,
    attend,
    name,
    drop_path_rate=0.0,
    dtype=None,
    epsilon=LAYER_NORM_EPSILON,
):
    """The rest of a transformer block, and where its attention goes.

    `x = x + drop_path(branch)`, then `x + drop_path(gate(MLP(LN2(x))))`
    with `gate = attend([branch, hidden, mlp_out])` (see the module
    docstring).

    Args:
        x: the block's input tokens (channels last, any rank >= 3).
        branch: the attention branch's output, after its projection, in the
            layout of `x`.
        mlp_ratio: hidden width of the MLP over the channels.
        attend: `attend(features, name=name)` (`attention_builder`).
        name: the block's name; layers `{name}_drop1`, `{name}_add1`,
            `{name}_norm2`, `{name}_mlp_fc1`, `{name}_mlp_fc2`, the attention
            (`{name}_ba`, `{name}_se`), `{name}_drop2`, `{name}_add2`.
        drop_path_rate: stochastic depth of both residual branches.
        dtype: dtype policy of the layers.
        epsilon: epsilon of `{name}_norm2` (PVT's blocks use 1e-6).

    Returns:
        The block's output tokens.
    """
    x = layers.Add(dtype=dtype, name=f"{name}_add1")(
        [x, drop_path(branch, drop_path_rate, f"{name}_drop1", dtype)]
    )
    normed = layer_norm(f"{name}_norm2", dtype, epsilon)(x)
    channels = x.shape[-1]
    hidden, out = mlp(normed, int(channels * mlp_ratio), f"{name}_mlp", dtype)
    out = attend([branch, hidden, out], name=name)
    return layers.Add(dtype=dtype, name=f"{name}_add2")(
        [x, drop_path(out, drop_path_rate, f"{name}_drop2", dtype)]
    )


def head_norm(backbone, x):
    """The classifier's final LayerNorm (`norm`), the `top` of `build_classifier`.

    The head of all three families is LayerNorm -> mean over tokens ->
    Linear; `keras_ba.applications.classifier.build_classifier(..., top=
    head_norm)` adds the pooling and the `predictions` Dense.

    Example:
    >>> import keras
    >>> head_norm(None, keras.Input((2, 2, 8))).shape
    (None, 2, 2, 8)
    """
    dtype = backbone.dtype_policy if backbone is not None else None
    return layer_norm("norm", dtype)(x)


def check_rate(value, name):
    """A rate in [0, 1).

    Example:
    >>> check_rate(0.1, "drop_path_rate")
    0.1
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a number in [0, 1). "
            f"Received: {name}={value!r}"
        )
    return float(value)
