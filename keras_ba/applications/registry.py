"""Model names used by the command line, mapped to application builders.

Builders are looked up lazily on `keras_ba.applications`, so a family added
there is available by name as soon as it is exported.

Example:
>>> get_model_builder("ba_resnet50").__name__
'BAResNet50'
"""

MODEL_BUILDERS = {
    "ba_resnet18": "BAResNet18",
    "ba_resnet34": "BAResNet34",
    "ba_resnet50": "BAResNet50",
    "ba_resnet101": "BAResNet101",
    "ba_resnet152": "BAResNet152",
    "ba_resnext50_32x4d": "BAResNeXt50_32x4d",
    "ba_resnext101_32x4d": "BAResNeXt101_32x4d",
    "ba_resnext101_32x8d": "BAResNeXt101_32x8d",
    **{f"ba_efficientnet_b{i}": f"BAEfficientNetB{i}" for i in range(8)},
    "ba_mobilenet_v3_small": "BAMobileNetV3Small",
    "ba_mobilenet_v3_large": "BAMobileNetV3Large",
    "ba_swin_tiny": "BASwinTransformerTiny",
    "ba_swin_small": "BASwinTransformerSmall",
    "ba_pvt_tiny": "BAPVTTiny",
    "ba_pvt_small": "BAPVTSmall",
    "ba_cswin_tiny": "BACSWinTiny",
    **{f"ba_regnety_{key}": f"BARegNetY{key}" for key in ("004", "008", "016", "032", "040")},
}


def list_models():
    """Names accepted by `get_model_builder`, for the installed families."""
    from keras_ba import applications

    return sorted(n for n, fn in MODEL_BUILDERS.items() if hasattr(applications, fn))


def get_model_builder(name):
    """Returns the builder function registered as `name`.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    from keras_ba import applications

    function_name = MODEL_BUILDERS.get(name)
    if function_name is None or not hasattr(applications, function_name):
        raise ValueError(f"Unknown model name {name!r}. Known models: {', '.join(list_models())}.")
    return getattr(applications, function_name)
