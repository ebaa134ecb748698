"""Swin's window arithmetic and its (shifted) window attention layer.

The official buffers (`relative_position_index`, `attn_mask`) are computed
here in NumPy from the configuration; `SwinWindowAttention` keeps them as
constants, never as weights (microsoft/Swin-Transformer
`models/swin_transformer.py` L100-156, L222-245).
"""

import keras
import numpy as np
from keras import layers, ops

from keras_ba import _validation
from keras_ba.applications import transformer

MASK_VALUE = -100.0  # the official value, not -inf


# === Window arithmetic (NumPy; the official buffers) ===


def relative_position_index(window_size):
    """The official `relative_position_index` buffer of a window.

    For query `(hi, wi)` and key `(hj, wj)` (tokens numbered row-major), the
    index is `(hi - hj + ws - 1) * (2 ws - 1) + (wi - wj + ws - 1)`.

    Example:
    >>> relative_position_index(2)
    array([[4, 3, 1, 0],
           [5, 4, 2, 1],
           [7, 6, 4, 3],
           [8, 7, 5, 4]])
    """
    rows, cols = np.meshgrid(np.arange(window_size), np.arange(window_size), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    dh = rows[:, None] - rows[None, :] + window_size - 1
    dw = cols[:, None] - cols[None, :] + window_size - 1
    return dh * (2 * window_size - 1) + dw


def window_partition(grid, window_size):
    """`(B, H, W, ...) -> (B * nW, ws * ws, ...)`: windows image-, row-, column-major.

    Example:
    >>> window_partition(np.arange(16).reshape(1, 4, 4), 2)[1]
    array([2, 3, 6, 7])
    """
    b, h, w = grid.shape[:3]
    rest = grid.shape[3:]
    x = grid.reshape((b, h // window_size, window_size, w // window_size, window_size) + rest)
    x = np.swapaxes(x, 2, 3)
    return x.reshape((-1, window_size * window_size) + rest)


def attention_mask(height, width, window_size, shift_size):
    """The official `attn_mask` buffer: `(nW, ws*ws, ws*ws)` of 0 and -100.

    On the shifted grid each axis has three bands, `[0, n - ws)`,
    `[n - ws, n - s)`, `[n - s, n)`; two tokens of one window may attend to
    each other only when they lie in the same region.

    Example:
    >>> mask = attention_mask(4, 4, 2, 1)
    >>> mask.shape, [int(m.min()) for m in mask]
    ((4, 4, 4), [0, -100, -100, -100])
    """
    labels = np.zeros((1, height, width), dtype=np.int64)
    bands_h = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    bands_w = bands_h
    count = 0
    for band_h in bands_h:
        for band_w in bands_w:
            labels[:, band_h, band_w] = count
            count += 1
    windows = window_partition(labels, window_size)
    different = windows[:, :, None] != windows[:, None, :]
    return np.where(different, MASK_VALUE, 0.0).astype("float32")


def cyclic_shift(x, shift):
    """`torch.roll(x, (shift, shift), dims=(1, 2))` written as slices and concatenations.

    The same values as `ops.roll`, in ops every export target has (LiteRT has
    no Roll): position `(i, j)` receives the token from `(i - shift, j - shift)`
    modulo the grid.

    Example:
    >>> keras.ops.convert_to_numpy(cyclic_shift(np.arange(4.0).reshape(1, 2, 2), -1)).tolist()
    [[[3.0, 2.0], [1.0, 0.0]]]
    """
    for axis in (1, 2):
        cut = (-shift) % x.shape[axis]
        if cut:
            head, tail = ops.split(x, [cut], axis=axis)
            x = ops.concatenate([tail, head], axis=axis)
    return x


def stage_windows(resolution, window_size, depth):
    """`(window, [shift of each block])` of a stage, with the official override.

    Odd blocks shift by `window // 2`; a stage whose smaller side is at most
    the window uses one window of that side and no shift.

    Example:
    >>> stage_windows((8, 8), 4, 2), stage_windows((4, 4), 4, 2)
    ((4, [0, 2]), (4, [0, 0]))
    """
    if min(resolution) <= window_size:
        return min(resolution), [0] * depth
    return window_size, [window_size // 2 if j % 2 else 0 for j in range(depth)]


# === Layers ===


@keras.saving.register_keras_serializable(package="keras_ba")
class SwinWindowAttention(layers.Layer):
    """(Shifted) window multi-head self-attention of a Swin block, on a grid.

    Takes the normalised `(batch, H, W, C)` grid, rolls it by `-shift` along
    H and W, cuts it into `window_size` windows, runs attention in each
    (relative position bias, and the -100 mask of the shifted windows),
    applies the output projection, puts the windows back and rolls by
    `+shift`. The relative position index and the mask are recomputed from
    the configuration (NumPy constants, never weights).

    Args:
        num_heads: attention heads (the channels must divide by them).
        window_size: side of the square windows (H and W must divide by it).
        shift_size: cyclic shift, `0 <= shift_size < window_size`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Example:
    >>> layer = SwinWindowAttention(num_heads=2, window_size=2, shift_size=1)
    >>> tuple(layer(np.zeros((1, 4, 4, 8), "float32")).shape), layer.attn_mask.shape
    ((1, 4, 4, 8), (4, 4, 4))
    """

    def __init__(self, num_heads, window_size, shift_size=0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = _validation.check_positive_int(num_heads, "num_heads")
        self.window_size = _validation.check_positive_int(window_size, "window_size")
        if not isinstance(shift_size, int) or not 0 <= shift_size < window_size:
            raise ValueError(
                "Received an invalid value for `shift_size`, expected an integer in "
                f"[0, window_size={window_size}). Received: shift_size={shift_size!r}"
            )
        self.shift_size = shift_size

    def build(self, input_shape):
        _, height, width, channels = input_shape
        ws = self.window_size
        if height is None or width is None or height % ws or width % ws:
            raise ValueError(
                f"`SwinWindowAttention` needs a known grid that divides into "
                f"{ws}x{ws} windows. Received input shape {tuple(input_shape)}."
            )
        if channels % self.num_heads:
            raise ValueError(
                f"`SwinWindowAttention` received {channels} channels, not a "
                f"multiple of num_heads={self.num_heads}."
            )
        self.grid = (height, width)
        self.qkv = layers.Dense(
            3 * channels,
            kernel_initializer=transformer.dense_init(),
            name="qkv",
            dtype=self.dtype_policy,
        )
        self.qkv.build((None, channels))
        self.proj = layers.Dense(
            channels,
            kernel_initializer=transformer.dense_init(),
            name="proj",
            dtype=self.dtype_policy,
        )
        self.proj.build((None, channels))
        self.relative_position_bias_table = self.add_weight(
            name="relative_position_bias_table",
            shape=((2 * ws - 1) ** 2, self.num_heads),
            initializer=transformer.dense_init(),
        )
        self.relative_position_index = relative_position_index(ws)
        self.attn_mask = (
            attention_mask(height, width, ws, self.shift_size) if self.shift_size else None
        )

    def call(self, x):
        height, width = self.grid
        ws, shift, heads = self.window_size, self.shift_size, self.num_heads
        channels = x.shape[-1]
        tokens, rows, cols = ws * ws, height // ws, width // ws
        if shift:
            x = cyclic_shift(x, -shift)
        x = ops.reshape(x, (-1, rows, ws, cols, ws, channels))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, tokens, channels))
        qkv = ops.reshape(self.qkv(x), (-1, tokens, 3, heads, channels // heads))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * ops.cast((channels // heads) ** -0.5, q.dtype)
        attn = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        bias = ops.take(
            self.relative_position_bias_table, self.relative_position_index.reshape(-1), axis=0
        )
        bias = ops.transpose(ops.reshape(bias, (tokens, tokens, heads)), (2, 0, 1))
        attn = attn + ops.cast(bias, attn.dtype)[None]
        if self.attn_mask is not None:
            attn = ops.reshape(attn, (-1, rows * cols, heads, tokens, tokens))
            attn = attn + ops.cast(self.attn_mask, attn.dtype)[None, :, None]
            attn = ops.reshape(attn, (-1, heads, tokens, tokens))
        attn = ops.softmax(attn, axis=-1)
        x = ops.reshape(ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3)), (-1, tokens, channels))
        x = self.proj(x)
        x = ops.reshape(x, (-1, rows, cols, ws, ws, channels))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, height, width, channels))
        if shift:
            x = cyclic_shift(x, shift)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "window_size": self.window_size,
                "shift_size": self.shift_size,
            }
        )
        return config
