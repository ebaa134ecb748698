"""EfficientNet's design: the stage table, compound scaling, its checks.

The stage table (`DEFAULT_BLOCKS_ARGS`, keras.applications' `DEFAULT_BLOCKS_ARGS`
with the authors' `se_ratio`) and the width/depth scaling rules of
EfficientNet (Tan & Le, 2019), used by `efficientnet.BAEfficientNetBackbone`.

Example:
>>> round_filters(32, 1.1), round_repeats(3, 1.4)
(32, 5)
"""

import copy
import math

from keras_ba import _validation
from keras_ba.applications import blocks

DEFAULT_BLOCKS_ARGS = (
    {
        "kernel_size": 3,
        "repeats": 1,
        "filters_in": 32,
        "filters_out": 16,
        "expand_ratio": 1,
        "id_skip": True,
        "strides": 1,
        "se_ratio": 0.25,
    },
    {
        "kernel_size": 3,
        "repeats": 2,
        "filters_in": 16,
        "filters_out": 24,
        "expand_ratio": 6,
        "id_skip": True,
        "strides": 2,
        "se_ratio": 0.25,
    },
    {
        "kernel_size": 5,
        "repeats": 2,
        "filters_in": 24,
        "filters_out": 40,
        "expand_ratio": 6,
        "id_skip": True,
        "strides": 2,
        "se_ratio": 0.25,
    },
    {
        "kernel_size": 3,
        "repeats": 3,
        "filters_in": 40,
        "filters_out": 80,
        "expand_ratio": 6,
        "id_skip": True,
        "strides": 2,
        "se_ratio": 0.25,
    },
    {
        "kernel_size": 5,
        "repeats": 3,
        "filters_in": 80,
        "filters_out": 112,
        "expand_ratio": 6,
        "id_skip": True,
        "strides": 1,
        "se_ratio": 0.25,
    },
    {
        "kernel_size": 5,
        "repeats": 4,
        "filters_in": 112,
        "filters_out": 192,
        "expand_ratio": 6,
        "id_skip": True,
        "strides": 2,
        "se_ratio": 0.25,
    },
    {
        "kernel_size": 3,
        "repeats": 1,
        "filters_in": 192,
        "filters_out": 320,
        "expand_ratio": 6,
        "id_skip": True,
        "strides": 1,
        "se_ratio": 0.25,
    },
)
BLOCK_ARG_KEYS = tuple(DEFAULT_BLOCKS_ARGS[0])

# === Compound scaling ===


def round_filters(filters, width_coefficient, divisor=8):
    """Scales a channel count by `width_coefficient`, rounded to `divisor`.

    Example:
    >>> round_filters(32, 1.1), round_filters(1280, 2.0)
    (32, 2560)
    """
    return blocks.make_divisible(filters * width_coefficient, divisor)


def round_repeats(repeats, depth_coefficient):
    """Scales a stage's block count by `depth_coefficient`, rounded up.

    Example:
    >>> round_repeats(3, 1.4)
    5
    """
    return int(math.ceil(depth_coefficient * repeats))


def _block_letter(index):
    """0 -> 'a', 25 -> 'z', 26 -> 'aa' (keras.applications uses a..z)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(97 + rest) + letters
    return letters


# === Argument checks ===


def _check_blocks_args(blocks_args):
    if blocks_args is None:
        return copy.deepcopy(list(DEFAULT_BLOCKS_ARGS))
    ok = isinstance(blocks_args, (list, tuple)) and len(blocks_args) > 0
    ok = ok and all(isinstance(args, dict) for args in blocks_args)
    if not ok:
        raise ValueError(
            "Received an invalid value for `blocks_args`, expected None (the "
            "EfficientNet table) or a non-empty list of dicts with keys "
            f"{BLOCK_ARG_KEYS}. Received: blocks_args={blocks_args!r}"
        )
    for stage, args in enumerate(blocks_args, start=1):
        missing = [key for key in BLOCK_ARG_KEYS if key not in args]
        if missing:
            raise ValueError(
                f"`blocks_args` stage {stage} lacks the keys {missing}; every "
                f"stage needs {BLOCK_ARG_KEYS}. Received: {args!r}"
            )
        for key in ("kernel_size", "repeats", "filters_in", "filters_out", "expand_ratio"):
            _validation.check_positive_int(args[key], f"blocks_args[{stage - 1}][{key!r}]")
        _validation.check_choice(args["strides"], f"blocks_args[{stage - 1}]['strides']", (1, 2))
    return copy.deepcopy(list(blocks_args))
