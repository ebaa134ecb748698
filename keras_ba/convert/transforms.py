"""How one PyTorch tensor becomes one Keras weight (layout transposes).

PyTorch stores a Linear weight as `[out, in]`, a Conv2d weight as
`[out, in / groups, kh, kw]` and a depthwise conv weight as
`[C * multiplier, 1, kh, kw]`; Keras wants `[in, out]`, `[kh, kw, in / groups,
out]` and `[kh, kw, C, multiplier]`. Kernels do not depend on `data_format`.
Each `Transform` knows both directions of the shape, so a checkpoint can be
validated against a model before a single value is converted.
"""

import dataclasses
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Transform:
    """A named layout change from a PyTorch tensor to a Keras weight.

    Args:
        name: short description used in reports.
        to_keras: `f(array, keras_shape) -> array` in the Keras layout.
        torch_shape: `f(keras_shape) -> tuple`, the PyTorch shape that maps
            onto a Keras weight of `keras_shape`.

    Example:
    >>> LINEAR.torch_shape((512, 10))
    (10, 512)
    """

    name: str
    to_keras: Callable
    torch_shape: Callable

    def __call__(self, array, keras_shape):
        return np.ascontiguousarray(self.to_keras(np.asarray(array), tuple(keras_shape)))


IDENTITY = Transform("copy", lambda a, s: a, tuple)

LINEAR = Transform("linear [out,in] -> [in,out]", lambda a, s: a.T, lambda s: (s[1], s[0]))

CONV = Transform(
    "conv [out,in,kh,kw] -> [kh,kw,in,out]",
    lambda a, s: a.transpose(2, 3, 1, 0),
    lambda s: (s[3], s[2], s[0], s[1]),
)

DEPTHWISE = Transform(
    "depthwise [C*m,1,kh,kw] -> [kh,kw,C,m]",
    lambda a, s: a.reshape(s[2], s[3], s[0], s[1]).transpose(2, 3, 0, 1),
    lambda s: (s[2] * s[3], 1, s[0], s[1]),
)

POINTWISE_TO_DENSE = Transform(
    "conv1x1 [out,in,1,1] -> dense [in,out]",
    lambda a, s: a.reshape(s[1], s[0]).T,
    lambda s: (s[1], s[0], 1, 1),
)

LINEAR_TO_POINTWISE = Transform(
    "linear [out,in] -> conv1x1 [1,1,in,out]",
    lambda a, s: a.T.reshape(s),
    lambda s: (s[3], s[2]),
)
