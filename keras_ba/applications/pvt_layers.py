"""PVT v1's own layers: position embeddings, class token, spatial-reduction attention.

Tokens are `(batch, tokens, channels)` in row-major order over the stage's
grid, as in the official `classification/pvt.py` (whai362/PVT).

Example:
>>> import numpy as np
>>> bilinear_matrix(2, 4).round(2).tolist()
[[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]
"""

import keras
import numpy as np
from keras import layers, ops

from keras_ba import _validation
from keras_ba.applications.transformer import dense_init

SR_NORM_EPSILON = 1e-5  # the SR LayerNorm is PyTorch's default, not `norm_layer`


def bilinear_matrix(size_out, size_in):
    """Rows of PyTorch's bilinear resize along one axis (`align_corners=False`).

    Half-pixel centres without antialiasing: output `i` reads the input at
    `(i + 0.5) * size_in / size_out - 0.5`, clamped at 0, between its two
    neighbours (the last index repeats at the border).

    Example:
    >>> bilinear_matrix(3, 3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    matrix = np.zeros((size_out, size_in), "float64")
    scale = size_in / size_out
    for index in range(size_out):
        source = max((index + 0.5) * scale - 0.5, 0.0)
        low = min(int(np.floor(source)), size_in - 1)
        high = min(low + 1, size_in - 1)
        weight = source - low
        matrix[index, low] += 1.0 - weight
        matrix[index, high] += weight
    return matrix


def _check_grid(value, name):
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )
    if not ok:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected (height, width), "
            f"two positive integers. Received: {name}={value!r}"
        )
    return tuple(value)


@keras.saving.register_keras_serializable(package="keras_ba")
class PositionEmbedding(layers.Layer):
    """Adds a learned position embedding stored for another grid, resized as PVT does.

    The weight `embeddings` has shape `(1, prefix_tokens + h0 * w0, C)`
    (`stored_grid = (h0, w0)`: the official `pos_embed{i}`). With
    `resize=True` its grid part is resized bilinearly (PyTorch's
    `F.interpolate(mode="bilinear")`, `align_corners=False`, no
    antialiasing) to `grid` before it is added; the prefix entries (PVT's
    class-token slot) are kept as they are. With `resize=False` it is added
    unchanged (the reference does so whenever a stage has as many patches as
    its first stage had at the construction size).

    Args:
        grid: `(h, w)` of the tokens it is added to.
        stored_grid: `(h0, w0)` of the stored embedding.
        prefix_tokens: tokens before the grid (1 for the class token).
        resize: whether to resize the stored grid to `grid`.
        **kwargs: `name`, `dtype`, ...

    Example:
    >>> layer = PositionEmbedding((4, 2), (2, 2), resize=True)
    >>> tuple(layer(np.zeros((1, 8, 3), "float32")).shape)
    (1, 8, 3)
    """

    def __init__(self, grid, stored_grid, prefix_tokens=0, resize=False, **kwargs):
        super().__init__(**kwargs)
        self.grid = _check_grid(grid, "grid")
        self.stored_grid = _check_grid(stored_grid, "stored_grid")
        if not isinstance(prefix_tokens, int) or prefix_tokens < 0:
            raise ValueError(
                "Received an invalid value for `prefix_tokens`, expected a "
                f"non-negative integer. Received: prefix_tokens={prefix_tokens!r}"
            )
        self.prefix_tokens = prefix_tokens
        self.resize = _validation.check_bool(resize, "resize")
        if not resize and np.prod(self.grid) != np.prod(self.stored_grid):
            raise ValueError(
                f"A position embedding stored for {self.stored_grid} cannot be added "
                f"unresized to a {self.grid} grid: pass resize=True."
            )

    def build(self, input_shape):
        count = self.prefix_tokens + self.stored_grid[0] * self.stored_grid[1]
        self.embeddings = self.add_weight(
            shape=(1, count, input_shape[-1]),
            initializer=dense_init(),  # the official trunc_normal(0.02)
            name="embeddings",
        )

    def resized(self):
        """The embedding as added: `(1, prefix_tokens + h * w, C)`.

        Example:
        >>> layer = PositionEmbedding((1, 2), (1, 1), resize=True)
        >>> layer.build((None, 2, 3))
        >>> tuple(layer.resized().shape)
        (1, 2, 3)
        """
        embeddings = self.embeddings
        if not self.resize:
            return embeddings
        (h, w), (h0, w0) = self.grid, self.stored_grid
        channels = embeddings.shape[-1]
        rows = ops.convert_to_tensor(bilinear_matrix(h, h0), dtype=embeddings.dtype)
        cols = ops.convert_to_tensor(bilinear_matrix(w, w0), dtype=embeddings.dtype)
        # Two matrix products (rows, then columns): plain ops that every
        # export format has.
        grid = ops.reshape(embeddings[0, self.prefix_tokens :], (h0, w0 * channels))
        grid = ops.reshape(ops.matmul(rows, grid), (h, w0, channels))
        grid = ops.reshape(ops.transpose(grid, (1, 0, 2)), (w0, h * channels))
        grid = ops.reshape(ops.matmul(cols, grid), (w, h, channels))
        grid = ops.reshape(ops.transpose(grid, (1, 0, 2)), (1, h * w, channels))
        return ops.concatenate([embeddings[:, : self.prefix_tokens], grid], axis=1)

    def call(self, inputs):
        return inputs + ops.cast(self.resized(), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid": self.grid,
                "stored_grid": self.stored_grid,
                "prefix_tokens": self.prefix_tokens,
                "resize": self.resize,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_ba")
class ClassToken(layers.Layer):
    """Prepends a learned class token (weight `token`, shape `(1, 1, C)`).

    Example:
    >>> tuple(ClassToken()(np.zeros((2, 4, 3), "float32")).shape)
    (2, 5, 3)
    """

    def build(self, input_shape):
        self.token = self.add_weight(
            shape=(1, 1, input_shape[-1]),
            initializer=dense_init(),  # the official trunc_normal(0.02)
            name="token",
        )

    def call(self, inputs):
        token = ops.cast(self.token, inputs.dtype)
        token = ops.broadcast_to(token, (ops.shape(inputs)[0], 1, inputs.shape[-1]))
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        tokens = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], tokens, input_shape[2])


def split_heads(x, heads):
    """`(B, N, C)` -> `(B, heads, N, C / heads)`: consecutive channel blocks.

    Example:
    >>> x = np.arange(8, dtype="float32").reshape(1, 1, 8)
    >>> keras.ops.convert_to_numpy(split_heads(x, 2))[0, :, 0].tolist()
    [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
    """
    tokens, channels = x.shape[1], x.shape[2]
    x = ops.reshape(x, (-1, tokens, heads, channels // heads))
    return ops.transpose(x, (0, 2, 1, 3))


def merge_heads(x):
    """`(B, heads, N, d)` -> `(B, N, heads * d)`, heads in order.

    Example:
    >>> x = np.arange(8, dtype="float32").reshape(1, 1, 8)
    >>> bool((keras.ops.convert_to_numpy(merge_heads(split_heads(x, 2))) == x).all())
    True
    """
    heads, tokens, dim = x.shape[1], x.shape[2], x.shape[3]
    return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, tokens, heads * dim))


def attend(q, k, v):
    """`softmax(q k^T / sqrt(d)) v` per head, the softmax over keys.

    Args:
        q, k, v: `(B, heads, N, d)`, `(B, heads, M, d)`, `(B, heads, M, d)`.

    Returns:
        `(B, heads, N, d)`.

    Example:
    >>> q = np.zeros((1, 1, 2, 4), "float32")  # equal scores: the mean of v
    >>> v = np.array([[[[1.0] * 4, [3.0] * 4]]], "float32")
    >>> keras.ops.convert_to_numpy(attend(q, v, v))[0, 0, :, 0].tolist()
    [2.0, 2.0]
    """
    scale = float(q.shape[-1]) ** -0.5
    scores = ops.matmul(ops.multiply(q, ops.cast(scale, q.dtype)), ops.transpose(k, (0, 1, 3, 2)))
    return ops.matmul(ops.softmax(scores, axis=-1), v)


@keras.saving.register_keras_serializable(package="keras_ba")
class SpatialReductionAttention(layers.Layer):
    """PVT v1's spatial-reduction attention (SRA), output projection included.

    `q = Linear(C, C)` over all tokens; with `sr_ratio` R > 1 the tokens are
    viewed as the `grid` map, reduced by `sr` (Conv2D, kernel = stride = R,
    with bias), flattened row-major and normalised by `norm` (LayerNorm,
    epsilon 1e-5); `kv = Linear(C, 2C)` (output channels `[k | v]`) reads
    the reduced tokens (all tokens when R = 1). Then multi-head attention
    with scale `head_dim ** -0.5`, heads concatenated, `proj`.

    Args:
        num_heads: number of heads (must divide C).
        sr_ratio: spatial reduction ratio R.
        grid: `(h, w)` of the tokens (needed when R > 1; the tokens are then
            exactly the `h * w` grid, no class token).
        **kwargs: `name`, `dtype`, ...

    Reference:
        Wang et al., "Pyramid Vision Transformer", ICCV 2021.

    Example:
    >>> layer = SpatialReductionAttention(2, sr_ratio=2, grid=(4, 4))
    >>> tuple(layer(np.zeros((1, 16, 8), "float32")).shape)
    (1, 16, 8)
    >>> tuple(layer.sr.kernel.shape), tuple(layer.kv.kernel.shape)
    ((2, 2, 8, 8), (8, 16))
    """

    def __init__(self, num_heads, sr_ratio=1, grid=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = _validation.check_positive_int(num_heads, "num_heads")
        self.sr_ratio = _validation.check_positive_int(sr_ratio, "sr_ratio")
        self.grid = None if grid is None else _check_grid(grid, "grid")
        if sr_ratio > 1 and grid is None:
            raise ValueError("SpatialReductionAttention with sr_ratio > 1 needs `grid=(h, w)`.")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels % self.num_heads:
            raise ValueError(
                f"num_heads={self.num_heads} does not divide the {channels} channels "
                f"of layer {self.name!r}."
            )
        policy = dict(dtype=self.dtype_policy)
        dense = dict(kernel_initializer=dense_init(), **policy)
        self.q = layers.Dense(channels, name="q", **dense)
        self.q.build(input_shape)
        self.kv = layers.Dense(2 * channels, name="kv", **dense)
        self.kv.build(input_shape)
        self.proj = layers.Dense(channels, name="proj", **dense)
        self.proj.build(input_shape)
        self.sr = self.norm = None
        if self.sr_ratio > 1:
            r = self.sr_ratio
            self.sr = layers.Conv2D(channels, r, strides=r, name="sr", **policy)
            self.sr.build((None, *self.grid, channels))
            self.norm = layers.LayerNormalization(epsilon=SR_NORM_EPSILON, name="norm", **policy)
            self.norm.build(input_shape)

    def call(self, inputs):
        channels = inputs.shape[-1]
        q = split_heads(self.q(inputs), self.num_heads)
        context = inputs
        if self.sr is not None:
            reduced = self.sr(ops.reshape(inputs, (-1, *self.grid, channels)))
            tokens = reduced.shape[1] * reduced.shape[2]
            context = self.norm(ops.reshape(reduced, (-1, tokens, channels)))
        kv = self.kv(context)
        k = split_heads(kv[..., :channels], self.num_heads)
        v = split_heads(kv[..., channels:], self.num_heads)
        return self.proj(merge_heads(attend(q, k, v)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "sr_ratio": self.sr_ratio, "grid": self.grid})
        return config
