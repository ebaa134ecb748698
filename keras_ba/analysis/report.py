"""The report folder of `keras-ba analyze`: figures, numbers and one index.html.

The folder is written under a temporary name beside the destination and
renamed at the end: an interrupted or failed run leaves nothing half
written, and a previous report at the same place is replaced only once the
new one is complete.

Example:
    from keras_ba.analysis import analyze
    analyze("runs/digits", compare="runs/digits_se", output="runs/digits/analysis")
"""

import csv
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from keras_ba.analysis import data as data_lib
from keras_ba.analysis.errors import AnalysisError
from keras_ba.analysis.report_html import referenced_files, render_html  # noqa: F401
from keras_ba.analysis.saliency import CAM_METHODS, check_methods

GENERATOR = "keras-ba analyze"
SUMMARY_FILE = "summary.json"
DEFAULT_FOLDER = "analysis"


# === Progress ===


class Progress:
    """A one-line text progress bar on stderr (one line per step when not a TTY).

    Example:
    >>> progress = Progress(2, enabled=False)
    >>> progress.step("loading"); progress.step("done"); progress.close()
    """

    def __init__(self, total, enabled=True, stream=None, width=24):
        self.total = max(1, total)
        self.done = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.time()

    def step(self, label):
        """Announces the step about to run."""
        self.done = min(self.done + 1, self.total)
        if not self.enabled:
            return
        filled = int(self.width * (self.done - 1) / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        seconds = time.time() - self.started
        line = f"[{bar}] {self.done}/{self.total} {label} ({seconds:.0f} s)"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        """Ends the bar line."""
        if self.enabled and self.tty:
            seconds = time.time() - self.started
            self.stream.write(f"\r\033[K[{'#' * self.width}] done ({seconds:.0f} s)\n")
            self.stream.flush()


# === Atomic folder ===


def _is_report(path):
    try:
        with open(os.path.join(path, SUMMARY_FILE)) as file:
            return json.load(file).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def check_output(output, overwrite=False):
    """Raises unless `output` can receive a report.

    A missing or empty folder, or a previous report, can; another existing
    path only with `overwrite=True`.

    Example:
    >>> check_output("no/such/folder")
    """
    if not os.path.exists(output):
        return
    if not os.path.isdir(output):
        raise AnalysisError(f"The output {output!r} exists and is not a folder.")
    if os.listdir(output) and not _is_report(output) and not overwrite:
        raise AnalysisError(
            f"The output folder {output!r} exists and is not a previous report; "
            "choose another --output or pass --overwrite."
        )


class _Staging:
    """A temporary sibling folder renamed to `output` on success, removed on failure."""

    def __init__(self, output, overwrite):
        self.output = os.path.abspath(output)
        self.overwrite = overwrite

    def __enter__(self):
        parent = os.path.dirname(self.output)
        os.makedirs(parent, exist_ok=True)
        name = os.path.basename(self.output)
        self.path = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.path, 0o777 & ~umask)  # mkdtemp makes it private (0700)
        return self.path

    def __exit__(self, kind, error, traceback):
        if kind is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return False
        try:
            check_output(self.output, self.overwrite)
            old = None
            if os.path.exists(self.output):
                old = tempfile.mkdtemp(
                    prefix=f".{os.path.basename(self.output)}.old-",
                    dir=os.path.dirname(self.output),
                )
                os.rmdir(old)
                os.rename(self.output, old)
            os.rename(self.path, self.output)
            if old:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        return False


# === The report ===


@dataclasses.dataclass
class Report:
    """What `analyze` wrote.

    Attributes:
        path: the report folder.
        files: files written, relative to `path`.
        summary: the content of `summary.json`.

    Example:
        report = analyze("runs/digits"); print(report.path)
    """

    path: str
    files: list
    summary: dict


def analyze(
    model,
    data=None,
    compare=None,
    output=None,
    subset="validation",
    limit=None,
    methods=CAM_METHODS,
    cam_images=8,
    features="squeezed",
    n_estimators=32,
    batch_size=64,
    max_n=16,
    seed=0,
    overwrite=False,
    progress=True,
    image_size=None,
):
    """Writes the analysis report of a trained model (and its SE baseline).

    The folder holds `index.html` (everything together), PNG figures
    (`attention_curves.png` as the paper's Fig. 4, `attention_spread.png`,
    `bridge_importance.png` as Fig. 5, `explanations.png` and one overlay
    per image and method under `overlays/`), the numbers as CSV
    (`attention_layers.csv`, `attention_stages.csv`, `attention_curves.csv`,
    `bridge_importance.csv`) and `summary.json`.

    Args:
        model: a `.keras` file or a `keras-ba train` run folder.
        data: `"digits"`, an image folder or `"tfds:<name>"`; None: the data
            in the run's `run.json`.
        compare: another model (file or run folder), e.g. the SE baseline,
            analysed on the same images and shown side by side.
        output: the report folder; default `<model folder>/analysis`.
        subset: `"validation"` or `"train"`.
        limit: analyse at most this many images.
        methods: saliency methods (`CAM_METHODS`); empty for none.
        cam_images: images in the saliency grid (one per class first).
        features: `"squeezed"` or `"pooled"` (see `bridge_importance`).
        n_estimators: trees per random forest.
        batch_size: batch size of the forward passes.
        max_n: channels used by Score-CAM (see `explain`).
        seed: seed of the forests and SmoothGrad.
        overwrite: replace an existing folder that is not a report.
        progress: show a progress bar on stderr.
        image_size: model input side; default `run.json`'s, else the model's.

    Returns:
        A `Report`.

    Raises:
        AnalysisError: a missing model, a model without attention layers,
            unknown methods, data that cannot be loaded or is empty, an
            output folder in the way. Nothing is left behind.

    Example:
        analyze("runs/digits", compare="runs/digits_se", methods=["gradcam"])
    """
    methods = check_methods(methods)
    if cam_images < 1 and methods:
        raise AnalysisError(f"cam_images must be a positive integer, received {cam_images}.")
    model_path = data_lib.resolve_model_path(model)
    compare_path = data_lib.resolve_model_path(compare) if compare else None
    output = output or os.path.join(os.path.dirname(os.path.abspath(model_path)), DEFAULT_FOLDER)
    check_output(output, overwrite)
    bar = Progress(6 + bool(compare_path) + bool(methods), enabled=progress)
    started = time.time()
    with _Staging(output, overwrite) as folder:
        writer = _Writer(folder)
        summary = _run(
            writer,
            bar,
            model_path,
            compare_path,
            data,
            subset,
            limit,
            methods,
            cam_images,
            features,
            n_estimators,
            batch_size,
            max_n,
            seed,
            image_size,
        )
        summary["seconds"] = round(time.time() - started, 1)
        summary["output"] = os.path.abspath(output)
        bar.step("writing index.html")
        writer.json(SUMMARY_FILE, summary)
        writer.text("index.html", render_html(summary, writer.files))
        missing = [
            f
            for f in referenced_files(os.path.join(folder, "index.html"))
            if not os.path.isfile(os.path.join(folder, f))
        ]
        if missing:
            raise AnalysisError(f"index.html references missing files: {missing}")
    bar.close()
    return Report(path=os.path.abspath(output), files=list(writer.files), summary=summary)


class _Writer:
    """Writes files into the staging folder and remembers them."""

    def __init__(self, folder):
        self.folder = folder
        self.files = []

    def path(self, name):
        path = os.path.join(self.folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def added(self, name):
        if os.path.isfile(os.path.join(self.folder, name)):
            self.files.append(name)
        return name

    def csv(self, name, rows, fields=None):
        fields = fields or list(dict.fromkeys(key for row in rows for key in row))
        with open(self.path(name), "w", newline="") as file:
            writer = csv.DictWriter(file, fields)
            writer.writeheader()
            writer.writerows(rows)
        return self.added(name)

    def json(self, name, value):
        with open(self.path(name), "w") as file:
            json.dump(_plain(value), file, indent=2)
            file.write("\n")
        return self.added(name)

    def text(self, name, value):
        with open(self.path(name), "w") as file:
            file.write(value)
        return self.added(name)


def _plain(value):
    """JSON-safe copy: NumPy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _load(path):
    from keras_ba.analysis.saliency import _load_model

    return _load_model(path)


def _run(
    writer,
    bar,
    model_path,
    compare_path,
    data,
    subset,
    limit,
    methods,
    cam_images,
    features,
    n_estimators,
    batch_size,
    max_n,
    seed,
    image_size,
):
    from keras_ba.analysis import importance as importance_lib
    from keras_ba.analysis import plots
    from keras_ba.analysis import probe as probe_lib
    from keras_ba.analysis import stats as stats_lib

    bar.step("loading the model")
    model = _load(model_path)
    probe_lib.select_attention_layers(model)
    names = [_label(model_path)]
    compare_model = None
    if compare_path:
        compare_model = _load(compare_path)
        probe_lib.select_attention_layers(compare_model)
        names.append(_label(compare_path))
        if names[1] == names[0]:
            names[1] += " (compare)"
    bar.step("loading the data")
    images = data_lib.report_images(model_path, model, data, subset, limit, batch_size, image_size)
    if compare_model is not None and compare_model.output_shape[-1] != model.output_shape[-1]:
        raise AnalysisError(
            f"The compared model predicts {compare_model.output_shape[-1]} classes, the "
            f"model {model.output_shape[-1]}."
        )
    timings = {}

    def timed(label, function, *args, **kwargs):
        begin = time.time()
        result = function(*args, **kwargs)
        timings[label] = round(time.time() - begin, 2)
        return result

    bar.step(f"attention weights of {names[0]} ({images.count} images)")

    def wants(current):
        layers = probe_lib.find_attention_layers(current)
        return (features,) if any(probe_lib.kind_of(x) == "ba" for x in layers) else ()

    weights = [
        timed(
            "attention_weights",
            probe_lib.attention_weights,
            model,
            images.dataset,
            features=wants(model),
        )
    ]
    weights[0].model_name = names[0]
    if compare_model is not None:
        bar.step(f"attention weights of {names[1]}")
        compare_data = data_lib.report_images(
            compare_path, compare_model, images.source, subset, limit, batch_size, image_size
        )
        weights.append(
            timed(
                "attention_weights_compare",
                probe_lib.attention_weights,
                compare_model,
                compare_data.dataset,
                features=wants(compare_model),
            )
        )
        weights[1].model_name = names[1]

    bar.step("attention statistics and figures")
    layer_rows = [row for result in weights for row in stats_lib.layer_table(result)]
    stage_rows = [row for result in weights for row in stats_lib.stage_table(result)]
    writer.csv("attention_layers.csv", layer_rows)
    writer.csv("attention_stages.csv", stage_rows)
    curves = plots.plot_attention_curves(
        weights, images.class_names, writer.path("attention_curves.png")
    )
    writer.added("attention_curves.png")
    writer.csv("attention_curves.csv", curves)
    plots.plot_stage_spread(stage_rows, writer.path("attention_spread.png"))
    writer.added("attention_spread.png")

    bar.step("bridge importance (random forests)")
    importance_summary = []
    for result, current in zip(weights, [model, compare_model], strict=False):
        if not any(kind == "ba" for kind in result.kinds.values()):
            importance_summary.append(
                {"model": result.model_name, "skipped": "no BridgeAttention layer"}
            )
            continue
        found = timed(
            f"bridge_importance_{result.model_name}",
            importance_lib.bridge_importance,
            current,
            None,
            features=features,
            n_estimators=n_estimators,
            random_state=seed,
            weights=result,
        )
        found.model_name = result.model_name
        stem = "bridge_importance" if current is model else "bridge_importance_compare"
        rows = [{"model": found.model_name, **row} for row in found.rows()]
        writer.csv(f"{stem}.csv", rows, ["model", "block", *found.feature_names])
        plots.plot_importance(found, writer.path(f"{stem}.png"))
        writer.added(f"{stem}.png")
        importance_summary.append(
            {
                "model": found.model_name,
                "features": found.features,
                "images": found.images,
                "n_estimators": n_estimators,
                "normalize": found.normalize,
                "feature_names": list(found.feature_names),
                "rows": rows,
                "figure": f"{stem}.png",
                "csv": f"{stem}.csv",
            }
        )

    explanations = None
    if methods:
        bar.step(f"saliency maps ({', '.join(methods)})")
        explanations = timed(
            "explanations",
            _explanations,
            writer,
            model_path,
            model,
            images,
            methods,
            cam_images,
            max_n,
            seed,
        )

    predictions = weights[0].predictions
    labels = weights[0].labels
    accuracy = None
    if predictions is not None and labels is not None:
        accuracy = float(np.mean(predictions == labels))
    compare_accuracy = None
    if len(weights) > 1 and weights[1].predictions is not None and weights[1].labels is not None:
        compare_accuracy = float(np.mean(weights[1].predictions == weights[1].labels))
    import keras

    from keras_ba.version import __version__

    return {
        "generator": GENERATOR,
        "keras_ba_version": __version__,
        "backend": keras.backend.backend(),
        "model": {
            "path": os.path.abspath(model_path),
            "name": names[0],
            "architecture": model.name,
            "accuracy": accuracy,
        },
        "compare": None
        if compare_model is None
        else {
            "path": os.path.abspath(compare_path),
            "name": names[1],
            "architecture": compare_model.name,
            "accuracy": compare_accuracy,
        },
        "data": {
            "source": images.source,
            "subset": subset,
            "images": images.count,
            "image_size": images.image_size,
            "crop_pct": images.crop_pct,
            "class_names": list(images.class_names),
        },
        "stages": stage_rows,
        "layers": layer_rows,
        "bridge_importance": importance_summary,
        "explanations": explanations,
        "timings": timings,
    }


def _explanations(writer, model_path, model, images, methods, count, max_n, seed):
    from keras_ba.analysis import plots
    from keras_ba.analysis.saliency import explain_file, overlay, save_png, upscale_nearest

    inputs, display, labels = data_lib.pick_images(images, count)
    predicted = np.asarray(model.predict(inputs, verbose=0)).argmax(axis=-1)
    cams = explain_file(model_path, inputs, methods, classes=predicted, max_n=max_n, seed=seed)
    overlays, files = {}, {}
    for method in methods:
        overlays[method] = np.stack(
            [overlay(d, c) for d, c in zip(display, cams[method], strict=True)]
        )
        files[method] = []
        for index, image in enumerate(overlays[method]):
            name = f"overlays/{_slug(method)}_{index}.png"
            save_png(writer.path(name), upscale_nearest(image))
            files[method].append(writer.added(name))
    names = images.class_names
    titles = [f"true {names[t]}, pred {names[p]}" for t, p in zip(labels, predicted, strict=True)]
    plots.plot_cam_grid(display, overlays, titles, writer.path("explanations.png"))
    writer.added("explanations.png")
    return {
        "methods": list(methods),
        "images": len(inputs),
        "labels": labels.tolist(),
        "predicted": predicted.tolist(),
        "target": "predicted class",
        "layer": _cam_layer(model),
        "score_cam_max_n": max_n,
        "overlays": files,
        "figure": "explanations.png",
        "cam_finite": {m: bool(np.isfinite(cams[m]).all()) for m in methods},
    }


def _label(model_path):
    """Short name of a model in the report: its run folder, or its file name."""
    folder, name = os.path.split(os.path.abspath(model_path))
    if name == data_lib.MODEL_FILE:
        return os.path.basename(folder)
    return os.path.splitext(name)[0]


def _cam_layer(model):
    from keras_ba.analysis.saliency import find_penultimate_layer

    return find_penultimate_layer(model)


def _slug(method):
    return method.replace("++", "pp")
