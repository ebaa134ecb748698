"""RegNet design space: stage widths, depths and group widths from (w0, wa, wm, depth).

Radosavovic et al.'s quantized linear rule, computed as timm's
`generate_regnet` and `RegNet._get_stage_args` compute it (timm 1.0,
`timm/models/regnet.py`), so that a configuration gives exactly the
reference network and its checkpoints load:

1. Block `j` of `depth` has the continuous width `u_j = w0 + wa * j`, the
   exponent `s_j = round(ln(u_j / w0) / ln(wm))` and the width
   `w_j = quant * round(w0 * wm**s_j / quant)` (float32 arithmetic, halves
   rounded to even, as `torch.round`).
2. The distinct widths, increasing, are the stages; the number of blocks of
   each is the stage depth.
3. Group compatibility: the bottleneck `b = int(w * bottle_ratio)`, the group
   width `g = min(group_size, b)`, then `b` rounded to a multiple of `g`
   (Python's `round`, halves to even; torchvision's rule, `make_divisible`,
   when `group_min_ratio > 0`); the stage width is `int(b / bottle_ratio)`.
4. A block uses `int(round(w * bottle_ratio))` bottleneck channels in
   `bottleneck // g` groups.

Example:
>>> design = regnet_design(depth=22, w0=96, wa=31.41, wm=2.24, group_size=64)
>>> design.stage_widths, design.stage_depths, design.groups
([128, 192, 512, 1088], [2, 6, 12, 2], [2, 3, 8, 17])
"""

import math
from typing import NamedTuple

import numpy as np

from keras_ba.applications import registry

# timm's RegNet-Y configurations (`regnet.py` model_cfgs, se_ratio 0.25), read
# from the table of named models: key ("004") -> w0, wa, wm, depth, group_size.
DESIGN_KEYS = ("w0", "wa", "wm", "depth", "group_size")
REGNETY_CONFIGS = {
    entry.name[-3:]: {key: entry.arguments[key] for key in DESIGN_KEYS}
    for entry in registry.MODELS.values()
    if entry.family == "regnety"
}


class RegNetDesign(NamedTuple):
    """What `regnet_design` derives (lists, one item per block or stage).

    Example:
    >>> RegNetDesign._fields[:3]
    ('per_block_widths', 'stage_widths_before_adjust', 'stage_depths')
    """

    per_block_widths: list
    stage_widths_before_adjust: list
    stage_depths: list
    stage_widths: list
    group_widths: list
    groups: list


def _check(ok, name, value, expected):
    if not ok:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected {expected}. Received: {name}={value!r}"
        )


def block_widths(depth, w0, wa, wm, quant=8):
    """Per-block widths of the quantized linear rule (step 1), in float32.

    Example:
    >>> block_widths(7, 16, 6.0, 1.5)
    [16, 24, 24, 32, 32, 56, 56]
    """
    _check(isinstance(depth, int) and depth > 0, "depth", depth, "a positive integer")
    _check(wa >= 0, "wa", wa, "a number >= 0")
    _check(w0 > 0 and w0 % quant == 0, "w0", w0, f"a positive multiple of {quant}")
    _check(wm > 1, "wm", wm, "a number > 1")
    f32 = np.float32
    continuous = np.arange(depth, dtype=f32) * f32(wa) + f32(w0)
    exponents = np.round(np.log(continuous / f32(w0)) / f32(math.log(wm)))
    widths = np.round(f32(w0) * np.power(f32(wm), exponents) / f32(quant)) * f32(quant)
    return [int(w) for w in widths]


def _make_divisible(value, divisor, min_value, round_limit=0.9):
    """timm's `make_divisible`: half up to a multiple, never below 90%."""
    new_value = max(min_value or divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def adjust_widths_groups(widths, bottle_ratio, group_size, group_min_ratio=0.0):
    """Makes each stage's bottleneck a multiple of its group width (step 3).

    Returns:
        `(stage_widths, group_widths)`.

    Example:
    >>> adjust_widths_groups([56, 136, 320, 776], 1.0, 16)
    ([64, 128, 320, 768], [16, 16, 16, 16])
    """
    bottlenecks = [int(w * bottle_ratio) for w in widths]
    group_widths = [min(group_size, b) for b in bottlenecks]
    if group_min_ratio:
        bottlenecks = [
            _make_divisible(b, g, group_min_ratio)
            for b, g in zip(bottlenecks, group_widths, strict=True)
        ]
    else:
        bottlenecks = [
            int(round(b / g) * g) for b, g in zip(bottlenecks, group_widths, strict=True)
        ]
    return [int(b / bottle_ratio) for b in bottlenecks], group_widths


def regnet_design(depth, w0, wa, wm, group_size, bottle_ratio=1.0, group_min_ratio=0.0):
    """Stage widths, depths and group widths of a RegNet configuration.

    Args:
        depth: total number of blocks.
        w0: initial width (a multiple of 8).
        wa: width slope (>= 0).
        wm: width multiplier (> 1).
        group_size: group width of the grouped 3x3 convs.
        bottle_ratio: bottleneck width / block width (1 for RegNet-X/Y).
        group_min_ratio: 0 (timm) or 0.9 (timm's `_tv` variants, torchvision's
            rounding).

    Returns:
        A `RegNetDesign`.

    Raises:
        ValueError: for arguments outside the design space.

    Example:
    >>> regnet_design(depth=7, w0=16, wa=6.0, wm=1.5, group_size=8).stage_widths
    [16, 24, 32, 56]
    """
    _check(
        isinstance(group_size, int) and group_size > 0,
        "group_size",
        group_size,
        "a positive integer",
    )
    _check(bottle_ratio > 0, "bottle_ratio", bottle_ratio, "a number > 0")
    widths = block_widths(depth, w0, wa, wm)
    stage_before = sorted(set(widths))
    stage_depths = [widths.count(w) for w in stage_before]
    stage_widths, group_widths = adjust_widths_groups(
        stage_before, bottle_ratio, group_size, group_min_ratio
    )
    groups = [
        int(round(w * bottle_ratio)) // g for w, g in zip(stage_widths, group_widths, strict=True)
    ]
    return RegNetDesign(widths, stage_before, stage_depths, stage_widths, group_widths, groups)


def se_widths(stage_widths, stage_depths, stem_filters=32, se_ratio=0.25):
    """Per-block SE widths, `round(se_ratio * block input width)`, by stage.

    Example:
    >>> se_widths([16, 24, 32, 56], [1, 2, 2, 2])
    [[8], [4, 6], [6, 8], [8, 14]]
    """
    widths, previous = [], stem_filters
    for width, blocks in zip(stage_widths, stage_depths, strict=True):
        inputs = [previous] + [width] * (blocks - 1)
        widths.append([int(round(se_ratio * c)) for c in inputs])
        previous = width
    return widths
