"""`keras-ba analyze`: attention weights, bridge importance and saliency maps as a report.

Arguments are parsed before Keras or TensorFlow is imported, so
`keras-ba analyze --help` answers at once.

Example:
    keras-ba analyze runs/digits
    keras-ba analyze runs/digits --compare runs/digits_se --output report --methods gradcam
"""

import argparse
import sys

CAM_METHODS = ("gradcam", "gradcam++", "scorecam", "smoothgrad")  # keras_ba.analysis.CAM_METHODS


def register(subparsers):
    """Adds the `analyze` command.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["analyze", "runs/digits", "--methods", "gradcam,scorecam"])
    >>> args.methods, args.cam_images
    (['gradcam', 'scorecam'], 8)
    """
    parser = subparsers.add_parser(
        "analyze",
        help="report on a trained model: attention weights (BAv1 Fig. 4), bridge importance "
        "(Algorithm 1), Grad-CAM/Score-CAM/SmoothGrad",
        description="Writes a report folder (index.html, PNG figures, CSV/JSON numbers) on a "
        "trained model: per-class channel attention weights per stage as in the BAv1 paper's "
        "Fig. 4 (side by side with an SE baseline given by --compare), the importance of each "
        "bridged feature (Algorithm 1, random forests), and tf-keras-vis saliency maps. The "
        "folder is written under a temporary name and renamed when complete.",
    )
    parser.add_argument("model", help="a .keras file or a `keras-ba train` run folder")
    parser.add_argument(
        "--data",
        help="'digits', an image folder (<folder>/<class>/<image>) or 'tfds:<name>'; "
        "default: the data in the run's run.json",
    )
    parser.add_argument(
        "--compare",
        metavar="SE_MODEL",
        help="a second model (e.g. the SE baseline) shown "
        "side by side, analysed on the same images",
    )
    parser.add_argument(
        "--output",
        help="report folder (default: <model folder>/analysis); a previous "
        "report there is replaced",
    )
    parser.add_argument(
        "--subset", default="validation", choices=("validation", "train"), help="data split"
    )
    parser.add_argument("--limit", type=int, help="analyse at most this many images")
    parser.add_argument(
        "--methods",
        type=_methods,
        default=list(CAM_METHODS),
        help=f"comma-separated saliency methods from {','.join(CAM_METHODS)}, or 'none' "
        "(default: all)",
    )
    parser.add_argument(
        "--cam-images", type=int, default=8, help="images in the saliency grid (default 8)"
    )
    parser.add_argument(
        "--features",
        default="squeezed",
        choices=("squeezed", "pooled"),
        help="bridge-importance inputs: the paper's squeezed S_i (default) or pooled gap(X_i)",
    )
    parser.add_argument(
        "--trees", type=int, default=32, help="trees per random forest (default 32)"
    )
    parser.add_argument(
        "--score-cam-channels",
        type=int,
        default=16,
        help="channels used by Score-CAM (Faster Score-CAM max_N, default 16)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="forward batch size")
    parser.add_argument(
        "--image-size", type=int, help="model input side (default: run.json, else the model's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the forests and SmoothGrad")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output folder that is not a previous report",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    parser.set_defaults(func=run)


def _methods(text):
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if methods == ["none"]:
        return []
    unknown = [m for m in methods if m not in CAM_METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown CAM method {unknown[0]!r}; choose from {', '.join(CAM_METHODS)} or 'none'"
        )
    return methods


def run(args):
    """Runs `keras-ba analyze`; user errors become one line and exit status 1."""
    from keras_ba.analysis.errors import AnalysisError

    try:
        from keras_ba.errors import WorkflowError
    except ImportError:  # pragma: no cover (training is part of keras_ba)
        WorkflowError = AnalysisError
    try:
        from keras_ba.analysis.report import analyze

        report = analyze(
            args.model,
            data=args.data,
            compare=args.compare,
            output=args.output,
            subset=args.subset,
            limit=args.limit,
            methods=args.methods,
            cam_images=args.cam_images,
            features=args.features,
            n_estimators=args.trees,
            batch_size=args.batch_size,
            max_n=args.score_cam_channels,
            seed=args.seed,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            image_size=args.image_size,
        )
    except (AnalysisError, WorkflowError) as error:
        if args.traceback:
            raise
        print(f"keras-ba analyze: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nkeras-ba analyze: interrupted; nothing was written.", file=sys.stderr)
        return 130
    print(f"Report: {report.path}/index.html")
    for row in report.summary["stages"]:
        print(
            f"  {row['model']:<16} {row['stage']:<8} class spread {row['class_spread']:.4f}  "
            f"channel std {row['channel_std']:.4f}"
        )
    return 0
