"""The one table of named models: every named model is one row.

A row (`ModelEntry`) says what the model is called on the command line
(`--model ba_resnet50`), which function builds it (`BAResNet50`, in the
family module `keras_ba.applications.resnet`), its family, the arguments
that make the generic builder this model (`arguments`, fixed) and the ones
it merely defaults (`defaults`, e.g. the attention), its default input size
and preprocessing, and whether it trains faster in `channels_first` under
PyTorch. The named builders, `keras-ba train --model`, `keras_ba.training`'s
name resolution and `--data-format auto` all read this table; nothing else
lists model names (keras-hub's presets and timm's `@register_model` play
this part there).

This module imports neither Keras nor a family module, so the command line
can check a model name (and suggest the closest one) at once; the family
module of a row is imported only when its builder is asked for.

Example:
>>> get_entry("ba_resnet50").family, get_entry("ba_resnet50").arguments["block_type"]
('resnet', 'bottleneck')
>>> get_model_builder("ba_resnet50").__name__
'BAResNet50'
"""

import dataclasses
import difflib
import importlib

RESNET_WIDTHS = (64, 128, 256, 512)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One named model.

    Attributes:
        name: the command-line name and the model's default Keras name.
        builder: the named builder's function name in `module`.
        family: `"resnet"`, `"resnext"`, `"efficientnet"`, ...
        module: the family module defining `builder` and the generic builder.
        arguments: what makes the family's generic builder this model
            (stage depths, widths, ...); a named builder refuses to change them.
        defaults: the named builder's defaults (attention, reduction, ...).
        default_size: the input side the model was designed for.
        preprocessing: `"imagenet"`: RGB in [0, 1] normalised with the
            ImageNet mean/std (`keras_ba.applications.preprocess_input`).
        channels_first: trains faster in `channels_first` under PyTorch
            (measured; `--data-format auto` reads it).

    Example:
    >>> get_entry("ba_efficientnet_b3").default_size
    300
    """

    name: str
    builder: str
    family: str
    module: str
    arguments: dict
    defaults: dict = dataclasses.field(default_factory=dict)
    default_size: int = 224
    preprocessing: str = "imagenet"
    channels_first: bool = False


def _resnets():
    depths = {
        18: ("basic", [2, 2, 2, 2]),
        34: ("basic", [3, 4, 6, 3]),
        50: ("bottleneck", [3, 4, 6, 3]),
        101: ("bottleneck", [3, 4, 23, 3]),
        152: ("bottleneck", [3, 8, 36, 3]),
    }
    for depth, (block_type, blocks) in depths.items():
        yield ModelEntry(
            f"ba_resnet{depth}",
            f"BAResNet{depth}",
            "resnet",
            "keras_ba.applications.resnet",
            {"stackwise_num_blocks": blocks, "block_type": block_type},
            {"attention": "bav1", "reduction": 16},
            channels_first=True,
        )


def _resnexts():
    # name -> (blocks per stage, groups, width per group)
    configs = {
        "50_32x4d": ([3, 4, 6, 3], 32, 4),
        "101_32x4d": ([3, 4, 23, 3], 32, 4),  # the authors' ba_resnext101
        "101_32x8d": ([3, 4, 23, 3], 32, 8),
    }
    for key, (blocks, groups, width) in configs.items():
        yield ModelEntry(
            f"ba_resnext{key}",
            f"BAResNeXt{key}",
            "resnext",
            "keras_ba.applications.resnext",
            {
                "stackwise_num_blocks": blocks,
                "block_type": "bottleneck",
                "groups": groups,
                "width_per_group": width,
            },
            {"attention": "bav1", "reduction": 16},
        )


def _efficientnets():
    # variant -> (width_coefficient, depth_coefficient, default_size, dropout_rate)
    configs = {
        0: (1.0, 1.0, 224, 0.2),
        1: (1.0, 1.1, 240, 0.2),
        2: (1.1, 1.2, 260, 0.3),
        3: (1.2, 1.4, 300, 0.3),
        4: (1.4, 1.8, 380, 0.4),
        5: (1.6, 2.2, 456, 0.4),
        6: (1.8, 2.6, 528, 0.5),
        7: (2.0, 3.1, 600, 0.5),
    }
    for index, (width, depth, size, dropout) in configs.items():
        yield ModelEntry(
            f"ba_efficientnet_b{index}",
            f"BAEfficientNetB{index}",
            "efficientnet",
            "keras_ba.applications.efficientnet",
            {"width_coefficient": width, "depth_coefficient": depth, "default_size": size},
            {"dropout_rate": dropout, "attention": "bav1", "reduction": 6},
            default_size=size,
        )


def _mobilenets():
    for kind, last_point_channels in (("small", 1024), ("large", 1280)):
        yield ModelEntry(
            f"ba_mobilenet_v3_{kind}",
            f"BAMobileNetV3{kind.title()}",
            "mobilenet_v3",
            "keras_ba.applications.mobilenet_v3",
            {"stack": kind, "last_point_channels": last_point_channels},
            {"alpha": 1.0, "dropout_rate": 0.2, "attention": "bav1", "reduction": 6},
        )


def _regnetys():
    # timm's RegNet-Y configurations (`regnet.py` model_cfgs, se_ratio 0.25): the
    # stage widths, depths and group widths are derived from them
    # (`regnet_design`), as timm derives them.
    configs = {
        "004": dict(w0=48, wa=27.89, wm=2.09, depth=16, group_size=8),
        "008": dict(w0=56, wa=38.84, wm=2.4, depth=14, group_size=16),
        "016": dict(w0=48, wa=20.71, wm=2.65, depth=27, group_size=24),
        "032": dict(w0=80, wa=42.63, wm=2.66, depth=21, group_size=24),
        "040": dict(w0=96, wa=31.41, wm=2.24, depth=22, group_size=64),
    }
    for key, design in configs.items():
        yield ModelEntry(
            f"ba_regnety_{key}",
            f"BARegNetY{key}",
            "regnety",
            "keras_ba.applications.regnety",
            {**design, "stem_filters": 32},
            {"attention": "bav2", "reduction": 4},
        )


def _swins():
    configs = {
        "tiny": ([2, 2, 6, 2], 0.2),
        "small": ([2, 2, 18, 2], 0.3),
    }
    for size, (depths, drop_path_rate) in configs.items():
        yield ModelEntry(
            f"ba_swin_{size}",
            f"BASwinTransformer{size.title()}",
            "swin",
            "keras_ba.applications.swin",
            {"embed_dim": 96, "depths": depths, "num_heads": [3, 6, 12, 24], "window_size": 7},
            {"drop_path_rate": drop_path_rate, "attention": "bav2", "reduction": 16},
        )


def _pvts():
    for size, depths in (("tiny", [2, 2, 2, 2]), ("small", [3, 4, 6, 3])):
        yield ModelEntry(
            f"ba_pvt_{size}",
            f"BAPVT{size.title()}",
            "pvt",
            "keras_ba.applications.pvt",
            {"depths": depths},
            {"drop_path_rate": 0.1, "attention": "bav2", "reduction": 16},
        )


def _cswins():
    yield ModelEntry(
        "ba_cswin_tiny",
        "BACSWinTiny",
        "cswin",
        "keras_ba.applications.cswin",
        {
            "embed_dim": 64,
            "depths": [1, 2, 21, 1],
            "num_heads": [2, 4, 8, 16],
            "split_sizes": [1, 2, 7, 7],
        },
        {"drop_path_rate": 0.2, "attention": "bav2", "reduction": 16},
    )


FAMILIES = (_resnets, _resnexts, _efficientnets, _mobilenets, _regnetys, _swins, _pvts, _cswins)
MODELS = {entry.name: entry for family in FAMILIES for entry in family()}
# The command-line names and their builders' function names (before 0.3, the table).
MODEL_BUILDERS = {name: entry.builder for name, entry in MODELS.items()}


def family_modules():
    """The modules defining the named models (importing them registers their
    classes for `.keras` loading).

    Example:
    >>> "keras_ba.applications.resnet" in family_modules()
    True
    """
    return sorted({entry.module for entry in MODELS.values()})


def list_models(family=None):
    """Names of the named models (of one `family`, if given), sorted.

    Example:
    >>> list_models("mobilenet_v3")
    ['ba_mobilenet_v3_large', 'ba_mobilenet_v3_small']
    """
    return sorted(n for n, entry in MODELS.items() if family in (None, entry.family))


def unknown_model_message(name):
    """The one-line error for an unknown model name, with the closest names.

    Example:
    >>> unknown_model_message("ba_resnet05")
    "Unknown model name 'ba_resnet05' (did you mean 'ba_resnet50'..."
    """
    close = difflib.get_close_matches(str(name), list(MODELS), n=2, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return f"Unknown model name {name!r}{hint}. Known models: {', '.join(list_models())}."


def get_entry(name):
    """The table row of the model `name`.

    Raises:
        ValueError: an unknown name, with the closest known names.

    Example:
    >>> get_entry("ba_resnet5")
    Traceback (most recent call last):
    ...
    ValueError: Unknown model name 'ba_resnet5' (did you mean 'ba_resnet50'...
    """
    entry = MODELS.get(name)
    if entry is None:
        raise ValueError(unknown_model_message(name))
    return entry


def get_model_builder(name):
    """Returns the builder function registered as `name`.

    Imports the row's family module (the table itself imports none).

    Raises:
        ValueError: for an unknown name, with the closest and all known ones.

    Example:
    >>> get_model_builder("ba_efficientnet_b0").__name__
    'BAEfficientNetB0'
    """
    entry = get_entry(name)
    return getattr(importlib.import_module(entry.module), entry.builder)


def variant_arguments(name, kwargs):
    """The generic builder's arguments for the named model `name`.

    The row's `arguments`, its `defaults` and the model name, updated with
    the caller's `kwargs` (which may not change the `arguments`).

    Raises:
        TypeError: `kwargs` changes what makes the model this one.

    Example:
    >>> variant_arguments("ba_resnet18", {"classes": 10})["stackwise_num_blocks"]
    [2, 2, 2, 2]
    >>> variant_arguments("ba_resnet18", {"block_type": "bottleneck"})
    Traceback (most recent call last):
    ...
    TypeError: BAResNet18 fixes `block_type`; build another structure with the family's generic builder (keras_ba.applications.resnet).
    """
    entry = get_entry(name)
    fixed = sorted(set(kwargs) & set(entry.arguments))
    if fixed:
        raise TypeError(
            f"{entry.builder} fixes {', '.join(f'`{k}`' for k in fixed)}; build another "
            f"structure with the family's generic builder ({entry.module})."
        )
    return {**entry.arguments, **entry.defaults, "name": entry.name, **kwargs}


VARIANT_DOCSTRING = """Instantiates {title} (`attention="{attention}"` by default).

    {description}

    Every argument is keyword-only and optional: `include_top`, `weights`,
    `input_tensor`, `input_shape`, `pooling`, `classes`,
    `classifier_activation`, `attention`, `reduction`, `data_format`,
    `trunk_style` (docs: trunks), `name` (default `"{name}"`) and the
    other options of `{generic}`,
    except {fixed}, which make the model this one (`--model {name}` on the
    command line; its row in `keras_ba.applications.registry.MODELS`).

    Returns:
        A functional `keras.Model`.

    Example:
    >>> model = {builder}(classes=10, input_shape=(64, 64, 3))  # doctest: +SKIP
    >>> model.output_shape  # doctest: +SKIP
    (None, 10)
    """


def document_variant(function, generic, title, description):
    """Gives the named builder `function` the shared docstring, from its row.

    Args:
        function: the named builder (its `__name__` is the row's `builder`).
        generic: the generic builder's name, e.g. `"BAResNet"`.
        title: e.g. `"BA-ResNet-50"`.
        description: what the model is (may use the row's `arguments` as
            `{stackwise_num_blocks}`-style fields).

    Example:
    >>> def BAResNet18(**kwargs): ...
    >>> _ = document_variant(BAResNet18, "BAResNet", "BA-ResNet-18", "A ResNet.")
    >>> BAResNet18.__doc__.splitlines()[0]
    'Instantiates BA-ResNet-18 (`attention="bav1"` by default).'
    """
    entry = next(e for e in MODELS.values() if e.builder == function.__name__)
    function.__doc__ = VARIANT_DOCSTRING.format(
        title=title,
        attention=entry.defaults.get("attention"),
        description=description.format(**entry.arguments),
        name=entry.name,
        generic=generic,
        fixed=", ".join(f"`{k}`" for k in entry.arguments),
        builder=entry.builder,
    )
    return function
