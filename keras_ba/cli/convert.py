"""`keras-ba convert`: an authors' PyTorch checkpoint -> a `.keras` file.

Example:
    keras-ba convert ba_resnet50.pth --arch ba_resnet50 --attention bav1 \
        -o ba_resnet50.keras
"""

import inspect
import os
import sys
import uuid

ATTENTIONS = ("bav1", "bav2", "se", "none")
CUSTOM_RESNET_ARGS = ("depths", "widths", "stem_filters", "block")


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
        help="convert an authors' PyTorch checkpoint into a .keras model",
        description="Builds a keras_ba model, loads a PyTorch state dict "
        "(.pth/.pt read with weights_only=True, .safetensors or .npz) into it "
        "with keras_ba.convert.load_torch_weights, and saves it as .keras.",
    )
    parser.add_argument("checkpoint", help="the .pth/.pt/.safetensors/.npz file")
    parser.add_argument("--arch", required=True, help="model name, e.g. ba_resnet50")
    parser.add_argument(
        "--attention",
        choices=ATTENTIONS,
        help="attention of the checkpoint (default: detected from its keys)",
    )
    parser.add_argument(
        "--classes", type=int, help="classifier size (default: read from the checkpoint)"
    )
    parser.add_argument(
        "--classifier-activation",
        choices=("softmax", "none"),
        default="softmax",
        help="activation of the saved model's classifier ('none' gives logits)",
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
        "--list", action="store_true", help="print every PyTorch key -> Keras weight pair"
    )
    parser.add_argument("-o", "--output", required=True, help="the .keras file to write")
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
    print(f"Wrote {output}")
    return 0


def convert(args):
    """Builds the model, loads the checkpoint, writes the `.keras` file.

    Returns:
        `(report, output_path)`.
    """
    from keras_ba.applications import get_model_builder
    from keras_ba.convert import load_torch_weights, read_state_dict

    if not args.output.endswith(".keras"):
        raise ValueError(f"The output file must end with '.keras'. Received: {args.output!r}")
    builder = get_model_builder(args.arch)
    state = read_state_dict(args.checkpoint)
    model = build_model(args, builder, state)
    report = load_torch_weights(model, state, strict=not args.non_strict)
    save_atomically(model, args.output)
    return report, args.output


def build_model(args, builder, state):
    """The model of `builder` (`args.arch`), configured for `state`."""
    from keras_ba.convert import detect_attention

    kwargs = {"classes": args.classes or _checkpoint_classes(state)}
    kwargs["classifier_activation"] = (
        None if args.classifier_activation == "none" else args.classifier_activation
    )
    attention = args.attention or detect_attention(state)
    if "attention" in inspect.signature(builder).parameters:
        kwargs["attention"] = None if attention in ("none", None) else attention
    if any(getattr(args, name) is not None for name in CUSTOM_RESNET_ARGS):
        return _custom_resnet(args, kwargs)
    return builder(**kwargs)


def _checkpoint_classes(state):
    for key in ("fc.weight", "_fc.weight", "classifier.weight"):
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
