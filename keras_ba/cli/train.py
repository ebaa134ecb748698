"""`keras-ba train`: the training command.

Example:
    keras-ba train --model ba_resnet18 --data digits --recipe small --epochs 3 --output runs/digits
"""

import argparse
import dataclasses
import os

from keras_ba.cli._shared import common_flags, flag_text, set_command, verbosity
from keras_ba.errors import WorkflowError

# Light imports only: the parser is built before Keras or TensorFlow start.
from keras_ba.options import (
    CACHE_MODES,
    DATA_FORMATS,
    DEVICES,
    DIGITS,
    DISTRIBUTE_MODES,
    JIT_CHOICES,
    PRECISIONS,
    STEMS,
)
from keras_ba.training import recipes


def register(subparsers):
    """Adds the `train` command.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> register(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["train", "--model", "ba_resnet50"]).model
    'ba_resnet50'
    """
    _add_train(subparsers)


# === train ===


def _add_train(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train a BA model (resumes an unfinished run in --output)",
        description="Train a BA model on the embedded digits, an image folder or a local "
        "TFDS dataset with one of the papers' recipes. Rerunning the same command after an "
        "interruption (even a kill) resumes at the next epoch; rerunning a finished run does "
        "nothing (--overwrite trains it again); another configuration in the same --output "
        "is refused.",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        default=DIGITS,
        help=f"'{DIGITS}' (embedded, no download), a folder <dir>/<class>/<image> (or "
        "<dir>/train + <dir>/val), or tfds:<name> prepared locally (default: digits)",
    )
    data.add_argument(
        "--validation-split",
        type=float,
        default=0.2,
        help="fraction held out for validation (default: 0.2)",
    )
    data.add_argument(
        "--split-seed",
        type=int,
        default=1337,
        help="seed of the train/validation split (default: 1337)",
    )
    data.add_argument("--limit", type=int, help="use at most N images per split (quick runs)")
    data.add_argument("--tfds-data-dir", help="TFDS data folder (default: TFDS' own)")
    data.add_argument(
        "--cache",
        default="auto",
        choices=CACHE_MODES,
        help="keep decoded images in memory (auto: when they fit in 2 GiB)",
    )
    _add_model_flags(parser)
    _add_recipe_flags(parser)
    run = parser.add_argument_group("run")
    run.add_argument("--output", help="run folder (default: runs/<model>)")
    run.add_argument("--seed", type=int, default=0, help="seed of weights, shuffle, augmentation")
    run.add_argument(
        "--steps-per-epoch",
        type=int,
        help="optimizer steps per epoch (default: one pass over the images)",
    )
    run.add_argument(
        "--precision",
        default="float32",
        choices=tuple(PRECISIONS),
        help="float32, or mixed precision with bfloat16 / float16 compute",
    )
    run.add_argument(
        "--distribute",
        default="none",
        choices=tuple(DISTRIBUTE_MODES),
        help="; ".join(f"{k}: {v}" for k, v in DISTRIBUTE_MODES.items()),
    )
    run.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="which device trains: gpu (an error without one), cpu (GPUs hidden), or "
        "auto (what the backend finds); the banner names it",
    )
    run.add_argument(
        "--devices",
        type=int,
        help="split the CPU into N devices (to try --distribute on one machine)",
    )
    _add_multiprocess_flags(parser)
    run.add_argument(
        "--jit-compile",
        default="auto",
        choices=tuple(JIT_CHOICES),
        help="XLA compilation of the train step (default: Keras' choice)",
    )
    run.add_argument(
        "--data-format",
        default="auto",
        choices=DATA_FORMATS,
        help="layout the model computes in (auto: channels_first for BA-ResNets under "
        "PyTorch, where it is faster, channels_last otherwise); the saved models are "
        "channels_last",
    )
    run.add_argument(
        "--compilation-cache",
        default="auto",
        metavar="DIR|auto|off",
        help="JAX: keep compiled programs in DIR so that the next run starts at once "
        "(auto: $KERAS_BA_COMPILATION_CACHE or ~/.cache/keras_ba/jax; off: none)",
    )
    run.add_argument("--no-plot", action="store_true", help="do not write history.png")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --output that holds a finished run or one of another "
        "configuration (its run files are removed first)",
    )
    common_flags(parser)
    set_command(parser, _train, check=_check_train)


def _add_multiprocess_flags(parser):
    group = parser.add_argument_group(
        "several processes",
        "--distribute data-parallel (JAX) or ddp (PyTorch) on several processes/machines. "
        "Each value may also come from KERAS_BA_NUM_PROCESSES, KERAS_BA_PROCESS_ID, "
        "KERAS_BA_COORDINATOR, KERAS_BA_DISTRIBUTED_TIMEOUT, or from torchrun / SLURM.",
    )
    group.add_argument("--num-processes", type=int, help="processes that train together")
    group.add_argument("--process-id", type=int, help="this process, 0..N-1 (0 writes the files)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address and port")
    group.add_argument(
        "--distributed-timeout",
        type=float,
        metavar="SECONDS",
        help="wait this long for the processes to join or a lost one (default: 300)",
    )
    group.add_argument(
        "--sync-batch-norm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ddp: BatchNorm statistics over the global batch (default), or per process",
    )


def _add_model_flags(parser):
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="ba_resnet18",
        help="model name, e.g. ba_resnet18, ba_resnet50 (keras_ba.applications."
        "list_models()); default: ba_resnet18",
    )
    group.add_argument(
        "--attention",
        metavar="NAME",
        help="attention in every block: a name registered in keras_ba.layers "
        "(built in: bav1, bav2, se) or none (default: the model's, bav1)",
    )
    group.add_argument(
        "--stem",
        default="auto",
        choices=STEMS,
        help="BA-ResNet stem: cifar (3x3/1) below 128 px when auto",
    )
    group.add_argument(
        "--depths",
        type=int,
        nargs="+",
        metavar="N",
        help="BA-ResNet blocks per stage, e.g. 1 1 1 1 (tiny test models)",
    )
    group.add_argument(
        "--widths",
        type=int,
        nargs="+",
        metavar="N",
        help="BA-ResNet filters per stage, e.g. 8 16 32 64",
    )
    group.add_argument(
        "--reduction",
        type=int,
        help="attention reduction ratio (default 16; smaller for tiny widths)",
    )
    group.add_argument("--weights", help="start from this .keras / .weights.h5 file")


def _add_recipe_flags(parser):
    group = parser.add_argument_group(
        "recipe",
        "Each flag replaces one field of the recipe; values of bav1 / bav2 / small in brackets.",
    )
    group.add_argument(
        "--recipe",
        default=None,
        choices=recipes.list_recipes(),
        help="default: bav2 for the vision transformers (ba_swin_*, ba_pvt_*, ba_cswin_*), "
        "small otherwise; " + "; ".join(f"{k}: {v}" for k, v in recipes.RECIPE_SUMMARIES.items()),
    )
    for field in dataclasses.fields(recipes.Recipe):
        defaults = " / ".join(
            str(getattr(recipes.RECIPES[n], field.name)) for n in ("bav1", "bav2", "small")
        )
        options = {"help": f"{field.metadata['help']} [{defaults}]", "default": None}
        if field.type is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = field.type
            options["choices"] = field.metadata["choices"]
        group.add_argument("--" + field.name.replace("_", "-"), **options)


def _check_train(args):
    """Checks of `train` that need no Keras: they answer before TensorFlow starts.

    Example:
    >>> _check_train(argparse.Namespace(model="ba_resnet5", device="auto"))
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: Unknown model name 'ba_resnet5' (did you mean 'ba_resnet50'...
    """
    from keras_ba.applications import registry

    if args.model not in registry.MODELS:
        raise WorkflowError(registry.unknown_model_message(args.model))


def _train(args):
    from keras_ba.training import devices

    devices.hide_gpus_if_asked(args.device)  # before the backend starts

    from keras_ba.training import compilation_cache, trainer
    from keras_ba.training.distributed import launch as multiprocess

    compilation_cache.enable_compilation_cache(args.compilation_cache)
    from keras_ba.data.pipeline import DataSource
    from keras_ba.training.models import ModelSpec

    group = multiprocess.resolve_process_group(
        args.distribute,
        num_processes=args.num_processes,
        process_id=args.process_id,
        coordinator=args.coordinator,
        distributed_timeout=args.distributed_timeout,
    )

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(recipes.Recipe)}
    recipe = recipes.get_recipe(args.recipe or recipes.default_recipe(args.model), **overrides)
    spec = ModelSpec(
        name=args.model,
        stem=args.stem,
        attention=args.attention,
        reduction=args.reduction,
        depths=tuple(args.depths) if args.depths else None,
        widths=tuple(args.widths) if args.widths else None,
        weights=args.weights,
    )
    source = DataSource(
        args.data, args.validation_split, args.split_seed, args.limit, args.tfds_data_dir
    )
    result = trainer.train(
        spec,
        source,
        recipe,
        args.output or os.path.join("runs", args.model),
        seed=args.seed,
        precision=args.precision,
        distribute_mode=args.distribute,
        devices=args.devices,
        steps_per_epoch=args.steps_per_epoch,
        jit_compile=args.jit_compile,
        verbose=verbosity(args.verbose),
        cache=args.cache,
        plot=not args.no_plot,
        overwrite=args.overwrite,
        log=lambda message: print(flag_text(message, args.command_parser), flush=True),
        process_group=group,
        sync_batch_norm=args.sync_batch_norm,
        data_format=args.data_format,
        device=args.device,
    )
    if result.already_finished:
        return 0
    last = {k: v[-1] for k, v in result.history.items() if v}
    shown = ", ".join(
        f"{k} {last[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in last
    )
    print(f"Last epoch: {shown}")
