"""BA-RegNetY-400MF ... 4.0GF: timm's `regnety_004` ... `regnety_040` with Bridge Attention.

Each is `keras_ba.applications.regnet.BARegNetY` with the stage widths,
depths and group widths that `regnet_design` derives from timm's
configuration (`REGNETY_CONFIGS`: w0, wa, wm, depth, group size).
`attention="se"` gives timm's RegNet-Y exactly (its ImageNet checkpoints
load with `keras_ba.convert.load_torch_weights`), `"bav2"` (default) and
`"bav1"` Bridge Attention in place of the SE, None the bare trunk.

Input convention: `preprocess_input` (RGB in [0, 255] -> ImageNet mean/std),
224 x 224 (timm trains at 224; its own weights are evaluated at 288).

Example:
>>> regnety_trunk("040")
([2, 6, 12, 2], [128, 192, 512, 1088], [64, 64, 64, 64])
"""

from keras_ba.applications import registry
from keras_ba.applications.preprocessing import preprocess_input
from keras_ba.applications.regnet import BARegNetY, regnety_trunk
from keras_ba.applications.regnet_design import DESIGN_KEYS

__all__ = [
    "BARegNetY004",
    "BARegNetY008",
    "BARegNetY016",
    "BARegNetY032",
    "BARegNetY040",
    "preprocess_input",
]

# === Named variants ===
# One row each in `registry.MODELS` (the design parameters); the examples are
# skipped in the suite, the tests build every variant shapes-only.

DESCRIPTION = """timm's RegNet-Y trunk (w0 {w0}, wa {wa}, wm {wm}, depth {depth},
    group width {group_size}; stage widths, depths and group widths derived
    as timm derives them) with Bridge Attention in every block;
    `attention="se"` is timm's RegNet-Y itself, None the trunk without
    attention. Takes `preprocess_input` output (ImageNet mean/std); 224 x 224
    by default."""


def _variant(name, **kwargs):
    arguments = registry.variant_arguments(name, kwargs)
    key = registry.get_entry(name).name[-3:]
    for design_key in DESIGN_KEYS:
        arguments.pop(design_key)
    return BARegNetY(*regnety_trunk(key), **arguments)


def BARegNetY004(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_regnety_004", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BARegNetY008(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_regnety_008", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BARegNetY016(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_regnety_016", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BARegNetY032(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_regnety_032", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BARegNetY040(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_regnety_040", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


VARIANTS = {
    "004": BARegNetY004,
    "008": BARegNetY008,
    "016": BARegNetY016,
    "032": BARegNetY032,
    "040": BARegNetY040,
}
FLOPS_NAMES = {"004": "400MF", "008": "800MF", "016": "1.6GF", "032": "3.2GF", "040": "4.0GF"}
for _key, _function in VARIANTS.items():
    registry.document_variant(
        _function, "BARegNetY", f"BA-RegNetY-{FLOPS_NAMES[_key]}", DESCRIPTION
    )
