"""`keras-ba convert`: a PyTorch checkpoint -> a `.keras` file.

The model is built with `trunk_style="pytorch"` (symmetric padding, PyTorch's
BatchNorm epsilons: the trunk that computes the checkpoint's function, see
docs/trunks.md) unless `--trunk-style keras` asks for the keras.applications
trunk; the printed report says which trunk was built.

Example:
    keras-ba convert ba_resnet50.pth --arch ba_resnet50 --attention bav1 \
        -o ba_resnet50.keras
    keras-ba convert resnet50-11ad3fa6.pth --from torchvision \
        --arch ba_resnet50 --classes 10 -o ba_resnet50_warm.keras
    keras-ba convert ba_resnet50.pth --arch ba_resnet50 --to-preset presets/ba_resnet50
"""

import os
import sys
import uuid

CUSTOM_RESNET_ARGS = ("depths", "widths", "stem_filters", "block")
# --from: where the checkpoint comes from. "authors": a checkpoint of the
# model itself (all keys, strict); "torchvision" / "timm": an ImageNet model
# of the same trunk without Bridge Attention (the trunk mode).
ORIGINS = ("authors", "torchvision", "timm", "official")
# "official": the official ImageNet checkpoint of a transformer trunk (Swin, PVT,
# CSWin: `--arch ba_swin_tiny`), loaded in the trunk mode like torchvision's.


def register(subparsers):
    """Adds the `convert` sub-command to the `keras-ba` parser.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> register(parser.add_subparsers())
    >>> parser.parse_args(["convert", "c.pth", "--arch", "ba_resnet50", "-o", "m.keras"]).arch
    'ba_resnet50'
    """
    parser = subparsers.add_parser(
        "convert",
        help="convert a PyTorch checkpoint (authors', torchvision, timm) into a .keras model",
        description="Builds a keras_ba model, loads a PyTorch state dict "
        "(.pth/.pt read with weights_only=True, .safetensors or .npz) into it "
        "with keras_ba.convert.load_torch_weights, and saves it as .keras. "
        "With --from torchvision or timm, the checkpoint is an ImageNet "
        "ResNet/ResNeXt without attention: its trunk is loaded and the "
        "attention layers stay freshly initialised (strict='trunk').",
    )
    parser.add_argument("checkpoint", help="the .pth/.pt/.safetensors/.npz file")
    parser.add_argument("--arch", required=True, help="model name, e.g. ba_resnet50")
    parser.add_argument(
        "--from",
        dest="origin",
        choices=ORIGINS,
        default="authors",
        help="where the checkpoint comes from: 'authors' (a checkpoint of the "
        "model itself, every key must match; default) or 'torchvision' / "
        "'timm' / 'official' (an ImageNet trunk, e.g. the official Swin checkpoint: "
        "attention layers stay initialised)",
    )
    parser.add_argument(
        "--attention",
        metavar="NAME",
        help="attention of the model: a name registered in keras_ba.layers "
        "(built in: bav1, bav2, se) or none (default: detected from the checkpoint's "
        "keys; with --from torchvision/timm: the model's default, bav1)",
    )
    parser.add_argument(
        "--classes",
        type=int,
        help="classifier size (default: read from the checkpoint; with --from "
        "torchvision/timm a different size leaves the classifier initialised)",
    )
    parser.add_argument(
        "--classifier-activation",
        choices=("softmax", "none"),
        default="softmax",
        help="activation of the saved model's classifier ('none' gives logits)",
    )
    parser.add_argument(
        "--trunk-style",
        choices=("pytorch", "keras"),
        default="pytorch",
        help="trunk to build: 'pytorch' (default: the checkpoint's own conventions, "
        "symmetric padding and PyTorch BatchNorm epsilons, so the model computes the "
        "checkpoint's function) or 'keras' (keras.applications' trunk where the family "
        "has one, e.g. BA-MobileNetV3: a different function, the report warns)",
    )
    reduced = parser.add_argument_group("reduced ResNets (ba_resnet* only)")
    reduced.add_argument("--depths", type=int, nargs="+", help="blocks per stage")
    reduced.add_argument("--widths", type=int, nargs="+", help="base width per stage")
    reduced.add_argument("--stem-filters", type=int, help="filters of the stem conv")
    reduced.add_argument("--block", choices=("basic", "bottleneck"), help="block type")
    parser.add_argument(
        "--non-strict",
        action="store_true",
        help="allow missing and unexpected keys (they are listed)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print every PyTorch key -> Keras weight pair, and every weight not loaded",
    )
    parser.add_argument("-o", "--output", help="the .keras file to write")
    parser.add_argument(
        "--to-preset",
        metavar="DIR",
        help="write a KerasHub preset folder instead (or as well): the backbone "
        "(config.json, model.weights.h5, metadata.json) and, for a pooling + "
        "predictions head, the ImageClassifier with its preprocessor; load it "
        "with keras_hub.models.Backbone.from_preset(DIR) (needs the hub extra)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.set_defaults(func=run)


def run(args):
    """Runs the conversion; returns the exit code (0, or 1 with a message).

    Example:
    >>> from keras_ba.cli import main
    >>> main(["convert", "missing.pth", "--arch", "ba_resnet18", "-o", "m.keras"])
    1
    """
    try:
        report, output = convert(args)
    except (ValueError, ImportError, OSError) as error:
        print(f"keras-ba convert: error: {error}", file=sys.stderr)
        return 1
    print(report)
    if args.list:
        for key, path, transform in report.mapped:
            print(f"  {key} -> {path} ({transform})")
        for path, reason in report.not_loaded:
            print(f"  not loaded: {path} ({reason})")
    print(f"Wrote {output}")
    return 0


def convert(args):
    """Builds the model, loads the checkpoint, writes the `.keras` file.

    Returns:
        `(report, output_path)`.
    """
    from keras_ba.applications import get_model_builder
    from keras_ba.convert import load_torch_weights, read_state_dict

    preset = getattr(args, "to_preset", None)
    if args.output is None and preset is None:
        raise ValueError("Name what to write: -o MODEL.keras and/or --to-preset DIR.")
    if args.output is not None and not args.output.endswith(".keras"):
        raise ValueError(f"The output file must end with '.keras'. Received: {args.output!r}")
    if preset is not None:
        _check_preset_target(preset)
    if (
        args.output is not None
        and os.path.exists(args.output)
        and not getattr(args, "overwrite", False)
    ):
        raise ValueError(
            f"The output file {args.output!r} already exists: pass --overwrite to replace it, "
            "or choose another name."
        )
    trunk = args.origin != "authors"
    if trunk and args.non_strict:
        raise ValueError(
            f"--non-strict cannot be combined with --from {args.origin}: the "
            "trunk mode already leaves the attention layers (and a classifier "
            "of another size) as they are, and checks everything else."
        )
    builder = get_model_builder(args.arch)
    from keras_ba.applications.backbone import capture_backbones

    state = read_state_dict(args.checkpoint)
    with capture_backbones() as built:
        model = build_model(args, builder, state)
    strict = "trunk" if trunk else not args.non_strict
    report = load_torch_weights(model, state, strict=strict)
    written = []
    if args.output is not None:
        save_atomically(model, args.output)
        written.append(args.output)
    if preset is not None:
        written.append(save_preset_atomically(model, built[-1], preset))
    return report, " and ".join(written)


def build_model(args, builder, state):
    """The model of `builder` (`args.arch`), configured for `state`."""
    from keras_ba.convert import detect_attention
    from keras_ba.convert.attention import attention_names

    if args.attention not in (None, "none", *attention_names()):
        raise ValueError(
            f"--attention must be one of {(*attention_names(), 'none')}. "
            f"Received: --attention {args.attention!r}"
        )
    kwargs = {"classes": args.classes or _checkpoint_classes(state)}
    kwargs["classifier_activation"] = (
        None if args.classifier_activation == "none" else args.classifier_activation
    )
    from keras_ba.applications import registry

    # Every named model's generic builder takes `trunk_style` and `attention`.
    kwargs["trunk_style"] = args.trunk_style
    if args.origin == "authors":
        attention = args.attention or detect_attention(state)
    else:  # an ImageNet trunk: the BA model asked for, the named model's default
        attention = args.attention or registry.get_entry(args.arch).defaults.get("attention")
    kwargs["attention"] = None if attention in ("none", None) else attention
    if any(getattr(args, name) is not None for name in CUSTOM_RESNET_ARGS):
        return _custom_resnet(args, kwargs)
    return builder(**kwargs)


def _checkpoint_classes(state):
    for key in ("fc.weight", "_fc.weight", "classifier.3.weight", "classifier.weight",
                "head.fc.weight", "head.weight"):  # fmt: skip
        if key in state:
            return int(state[key].shape[0])
    return 1000


def _custom_resnet(args, kwargs):
    from keras_ba.applications import BAResNet, resnet

    prefix = "ba_resnet"
    depth = args.arch[len(prefix) :]
    if not (args.arch.startswith(prefix) and depth.isdigit()):
        raise ValueError(
            f"--depths/--widths/--stem-filters/--block apply to ba_resnet* models "
            f"only. Received: --arch {args.arch}"
        )
    block_type, depths = resnet.RESNET_DEPTHS[int(depth)]
    return BAResNet(
        args.depths or depths,
        args.widths or (64, 128, 256, 512),
        block_type=args.block or block_type,
        stem_filters=args.stem_filters or 64,
        name=args.arch,
        **kwargs,
    )


def _check_preset_target(preset):
    from keras_ba.extras import require

    require("keras_hub", "hub", "keras-ba convert --to-preset")
    if os.path.exists(preset) and os.listdir(preset):
        raise ValueError(f"The preset folder {preset!r} exists and is not empty.")
    parent = os.path.dirname(os.path.abspath(preset))
    if not os.path.isdir(parent):
        raise ValueError(f"The directory {parent!r} of the preset does not exist.")


def save_preset_atomically(model, backbone, preset):
    """Writes `backbone` (and `model` as KerasHub's classifier, when its head
    allows) as a KerasHub preset, into a temporary folder renamed at the end.

    Returns:
        A description of what was written.
    """
    import shutil

    from keras_ba.applications.hub import classifier_to_task

    parent = os.path.dirname(os.path.abspath(preset))
    temporary = os.path.join(parent, f".{os.path.basename(preset)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            classifier_to_task(model, backbone).save_to_preset(temporary)
            what = "classifier preset"
        except ValueError:  # a head KerasHub's ImageClassifier cannot hold
            backbone.save_to_preset(temporary)
            what = "backbone preset"
        if os.path.isdir(preset):
            os.rmdir(preset)  # checked empty
        os.replace(temporary, preset)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return f"{what} {preset}"


def save_atomically(model, output):
    """Saves to a temporary `.keras` beside `output`, then renames it.

    Nothing is left behind if saving fails.
    """
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise ValueError(f"The output directory {directory!r} does not exist.")
    temporary = os.path.join(
        directory, f".{os.path.basename(output)}.{uuid.uuid4().hex[:8]}.tmp.keras"
    )
    try:
        model.save(temporary)
        os.replace(temporary, output)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
