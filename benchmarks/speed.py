"""Speed of Bridge Attention against SE, no attention and keras.applications.

    KERAS_BACKEND=jax python -m benchmarks.speed --size 128 --batch 8 --json bench_jax.json

For each family (ResNet-50, EfficientNet-B0, ...) it builds every variant in
ONE process (keras.applications' plain model, keras_ba without attention,
with SE, BAv1, BAv2; with `--torch-reference` the same BA-ResNet in plain
PyTorch), then runs rounds: in each round every model does one timed train
step (and then one timed inference batch), in an order rotated by one model
per round, so that a slow spell of a shared machine hits all models alike.
The first `--warmup` rounds (compilation, allocator growth) are discarded.
Reported: the median step time of each model, and for every round the ratio
of a model's time to a baseline's time in that same round, summarised by the
median and the spread (25th-75th percentile in the table; min, max and every
round in the JSON).

Time to first train step and peak memory depend on the state of the process,
so they are measured apart, in one fresh subprocess per model
(`benchmarks.probe`): imports, then build + compile + first step (timed),
then a few steps for the memory peak. Peak memory is, by availability: the
GPU allocator's peak (`--device gpu`); under JAX on CPU, XLA's buffer
assignment of the compiled train step; otherwise the process's resident-set
high-water mark minus its size after imports.

`--device gpu` runs the same measurement on the backend's GPU with bfloat16
mixed precision and `jit_compile="auto"` (XLA under TensorFlow when Keras
accepts the model, always under JAX). Run one process per backend. Numbers
from a machine shared with other work are indicative only.

Example (the pure parts; the measurement needs models):
>>> ratio_summary([2.0, 3.0, 5.0], [1.0, 2.0, 2.0])["median"]  # ratios 2, 1.5, 2.5
2.0
>>> format_ratio({"median": 1.234, "p25": 1.1, "p75": 1.3})
'1.23 (1.10–1.30)'
"""

import argparse
import datetime
import gc
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import models

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_VARIANTS = ["keras", "none", "se", "bav1", "bav2"]
DEFAULT_BASELINES = ["se", "none", "keras"]
TORCH_REFERENCE_VARIANTS = ["bav1:cf", "torch-bav1"]
PHASES = ("train", "infer")


class BenchmarkError(ValueError):
    """A benchmark that cannot run as asked (reported as one line by the CLI)."""


# Tolerance of the keras_ba vs plain-PyTorch logits check in float32, relative to
# max(1, largest logit): CPU, and GPU where convolutions may run in TF32. Under
# mixed precision the difference is only reported.
LOGITS_TOLERANCE = {"cpu": 1e-3, "gpu": 1e-2}


# === Statistics and formatting (pure) ===


def ratio_summary(times, base_times):
    """Median and spread of the per-round ratios `times[r] / base_times[r]`.

    Args:
        times: step times of a model, one per measured round.
        base_times: the baseline's times in the same rounds.

    Returns:
        A dict with `median`, `p25`, `p75`, `min`, `max` and `rounds` (the
        list of per-round ratios).

    Example:
    >>> ratio_summary([1.0, 1.0], [1.0, 0.5])["max"]
    2.0
    """
    if len(times) != len(base_times) or not times:
        raise ValueError(
            f"need the same non-zero number of rounds, got {len(times)} and {len(base_times)}"
        )
    ratios = np.asarray(times, dtype="float64") / np.asarray(base_times, dtype="float64")
    p25, median, p75 = np.percentile(ratios, [25, 50, 75])
    return {
        "median": float(median),
        "p25": float(p25),
        "p75": float(p75),
        "min": float(ratios.min()),
        "max": float(ratios.max()),
        "rounds": [float(r) for r in ratios],
    }


def format_ratio(summary):
    """`median (p25–p75)` with two decimals, or `n/a`.

    Example:
    >>> format_ratio(None)
    'n/a'
    """
    if summary is None:
        return "n/a"
    return f"{summary['median']:.2f} ({summary['p25']:.2f}–{summary['p75']:.2f})"


def rotated(items, shift):
    """`items` rotated left by `shift`: the round-robin order of a round.

    Example:
    >>> rotated(["a", "b", "c"], 4)
    ['b', 'c', 'a']
    """
    shift %= len(items)
    return list(items[shift:]) + list(items[:shift])


def timing_columns(baselines):
    """Column names of the timing table for the given baselines.

    Example:
    >>> timing_columns(["se"])
    ['model', 'params', 'jit', 'train ms', 'infer ms', 'train vs se', 'infer vs se']
    """
    columns = ["model", "params", "jit", "train ms", "infer ms"]
    for base in baselines:
        columns += [f"train vs {base}", f"infer vs {base}"]
    return columns


def startup_columns(baselines):
    """Column names of the start-up and memory table.

    Example:
    >>> startup_columns(["none"])
    ['model', 'build s', 'first step s', 'startup s', 'startup vs none', 'peak MiB', 'memory vs none']
    """
    columns = ["model", "build s", "first step s", "startup s"]
    columns += [f"startup vs {base}" for base in baselines]
    columns += ["peak MiB"] + [f"memory vs {base}" for base in baselines]
    return columns


def _mebibytes(size):
    """Bytes as MiB with at least two significant digits.

    Example:
    >>> _mebibytes(1.5 * 2**20), _mebibytes(3000 * 2**20)
    ('1.50', '3000')
    """
    mib = size / 2**20
    return f"{mib:.2f}" if mib < 10 else f"{mib:.1f}" if mib < 100 else f"{mib:.0f}"


def _markdown_table(columns, rows):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell_ratio(ratios, model, base):
    if model == base:
        return "—"
    return format_ratio(ratios.get(model, {}).get(base))


def format_markdown(results):
    """The report: a header, then per family a timing table and (when
    measured) a start-up and memory table."""
    config, machine = results["config"], results["machine"]
    lines = [
        f"## keras_ba speed: {results['backend']} backend, {results['date']}",
        "",
        f"Machine: {machine['description']}; load average {machine['load_start']} at start, "
        f"{machine['load_end']} at end.",
        f"Input {config['size']}x{config['size']}, batch {config['batch']}, {config['precision']}, "
        f"jit_compile={config['jit_compile']}, {config['rounds']} measured rounds after "
        f"{config['warmup']} warm-up rounds, model order rotated each round. Ratios: median "
        "(25th–75th percentile) of the per-round ratios of step time.",
    ]
    for family in results["families"].values():
        baselines = family["baselines"]
        lines += ["", f"### {family['title']}", ""]
        rows = []
        for name, entry in family["models"].items():
            row = [
                entry["label"],
                f"{entry['params'] / 1e6:.2f}M",
                entry["jit_compile"],
                f"{entry['train_ms']['median']:.1f}",
                f"{entry['infer_ms']['median']:.1f}",
            ]
            for base in baselines:
                row += [
                    _cell_ratio(family["ratios"]["train"], name, base),
                    _cell_ratio(family["ratios"]["infer"], name, base),
                ]
            rows.append(row)
        lines.append(_markdown_table(timing_columns(baselines), rows))
        for name, check in family.get("torch_check", {}).items():
            lines.append(
                f"\n`{name}` loaded the weights of `{check['reference']}` (plain PyTorch): max abs "
                f"diff of eval-mode logits {check['max_abs_diff']:.2e} (logits up to "
                f"{check['max_abs_logit']:.2f})."
            )
        if family.get("probes"):
            lines += [
                "",
                f"Fresh process per model (measure of peak memory: {family['memory_measure']}):",
                "",
            ]
            rows = []
            for name, entry in family["models"].items():
                probe = entry.get("probe")
                if probe is None:
                    continue
                row = [
                    entry["label"],
                    f"{probe['build_s']:.1f}",
                    f"{probe['first_step_s']:.1f}",
                    f"{probe['startup_s']:.1f}",
                ]
                row += [_cell_ratio(family["ratios"]["startup"], name, b) for b in baselines]
                memory = probe.get("memory_bytes")
                row.append("n/a" if memory is None else _mebibytes(memory))
                row += [_cell_ratio(family["ratios"]["memory"], name, b) for b in baselines]
                rows.append(row)
            lines.append(_markdown_table(startup_columns(baselines), rows))
    return "\n".join(lines) + "\n"


def write_json(path, results):
    """Writes `results` to `path` atomically (temporary file + rename)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(results, file, indent=1)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# === Command line ===


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def build_parser():
    """The `python -m benchmarks.speed` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed",
        description="Interleaved speed benchmark of keras_ba's attention variants on the "
        "current KERAS_BACKEND (one process per backend).",
    )
    parser.add_argument(
        "--families",
        nargs="+",
        default=["resnet50", "efficientnetb0"],
        choices=sorted(models.FAMILIES),
        help="backbones to measure (default: resnet50 efficientnetb0)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=DEFAULT_VARIANTS,
        help="models per family: keras none se bav1 bav2 torch-bav1 torch-se torch-none, "
        "optional suffix :cf (channels_first) / :cl (channels_last); variants a family "
        "lacks (keras for tiny families, torch-* for EfficientNet) are skipped",
    )
    parser.add_argument(
        "--baselines",
        nargs="+",
        default=None,
        help="variants the ratios are taken against (default: those of se none keras that "
        "are measured)",
    )
    parser.add_argument(
        "--torch-reference",
        action="store_true",
        help="PyTorch backend: add the plain-PyTorch BA-ResNet yardstick (torch-bav1, same "
        "weights, logits checked) and bav1:cf, with torch-bav1 as a baseline",
    )
    parser.add_argument("--size", type=_positive_int, default=224, help="image side (default 224)")
    parser.add_argument(
        "--batch", type=_positive_int, default=None, help="batch size (default 8 on cpu, 64 on gpu)"
    )
    parser.add_argument("--classes", type=_positive_int, default=1000)
    parser.add_argument("--rounds", type=_positive_int, default=10, help="measured rounds")
    parser.add_argument(
        "--warmup", type=_non_negative_int, default=2, help="discarded rounds (default 2)"
    )
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="float32, or mixed bfloat16/float16 (default: float32 on cpu, bfloat16 on gpu)",
    )
    parser.add_argument(
        "--jit-compile",
        choices=["auto", "on", "off"],
        default="auto",
        help="Keras compile(jit_compile=...) (default auto: Keras decides; the table shows "
        "what it resolved to)",
    )
    parser.add_argument(
        "--no-probes",
        action="store_true",
        help="skip the fresh-process measures (time to first step, peak memory)",
    )
    parser.add_argument(
        "--probe-repeats", type=_positive_int, default=1, help="fresh processes per model"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def resolve_config(args):
    """Checks the arguments against each other; returns the run's config dict.

    Raises:
        ValueError: for an unknown variant, a baseline that is not measured,
            or options that do not fit together.
    """
    variants = list(dict.fromkeys(args.variants))
    if args.baselines is None:
        baselines = [b for b in DEFAULT_BASELINES if b in variants]
    else:
        baselines = list(dict.fromkeys(args.baselines))
    if args.torch_reference:
        variants += [v for v in TORCH_REFERENCE_VARIANTS if v not in variants]
        baselines += [v for v in TORCH_REFERENCE_VARIANTS[-1:] if v not in baselines]
    specs = [models.parse_variant(v) for v in variants]
    for base in baselines:
        models.parse_variant(base)
        if base not in variants:
            raise ValueError(f"baseline {base!r} is not among the variants {variants}")
    for family_name in args.families:
        family = models.FAMILIES[family_name]
        if args.size < family.min_size:
            raise ValueError(
                f"--size {args.size} is below {family.min_size}, the smallest input of {family_name}"
            )
    if args.warmup == 0 and not args.quiet:
        print("[bench] warning: --warmup 0 times the compilation too", file=sys.stderr)
    precision = args.precision or ("bfloat16" if args.device == "gpu" else "float32")
    return {
        "families": list(dict.fromkeys(args.families)),
        "variants": variants,
        "baselines": baselines,
        "torch_variants": [s.name for s in specs if s.framework == "torch"],
        "size": args.size,
        "batch": args.batch or (64 if args.device == "gpu" else 8),
        "classes": args.classes,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "device": args.device,
        "precision": precision,
        "jit_compile": {"auto": "auto", "on": True, "off": False}[args.jit_compile],
        "probes": not args.no_probes,
        "probe_repeats": args.probe_repeats,
    }


# === Device and machine ===


def _hide_gpus_before_import(device):
    """`--device cpu`: hide GPUs from the backend (only possible before it is imported)."""
    if device == "cpu" and "keras" not in sys.modules:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["JAX_PLATFORMS"] = "cpu"


def _gpu_name(backend):
    """Name of the backend's first GPU, or None."""
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return details.get("device_name", gpus[0].name)
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return device.device_kind
    return None


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def describe_machine(backend, device):
    """Machine description for the report; checks that `device` is what runs.

    Raises:
        ValueError: `--device gpu` without a GPU visible to the backend, or
            `--device cpu` when a GPU is visible and it is too late to hide it.
    """
    gpu = _gpu_name(backend)
    if device == "gpu" and gpu is None:
        raise BenchmarkError(f"--device gpu: the {backend} backend sees no GPU")
    if device == "cpu" and gpu is not None:
        raise BenchmarkError(
            f"--device cpu: the {backend} backend already sees the GPU {gpu}; run "
            "`python -m benchmarks.speed` in a fresh process (or set CUDA_VISIBLE_DEVICES=)"
        )
    cpu = f"{_cpu_name()}, {os.cpu_count()} logical CPUs"
    return {
        "description": f"{gpu} GPU, {cpu}" if gpu else cpu,
        "gpu": gpu,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_start": _load(),
        "load_end": None,
    }


def _versions():
    import keras

    versions = {"keras": keras.__version__}
    for module in ("tensorflow", "jax", "torch"):
        if module in sys.modules:
            versions[module] = getattr(sys.modules[module], "__version__", "?")
    try:
        from keras_ba.version import __version__

        versions["keras_ba"] = __version__
    except ImportError:
        pass
    return versions


# === In-process interleaved timing ===


class _Progress:
    def __init__(self, quiet):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message):
        if not self.quiet:
            elapsed = time.perf_counter() - self.start
            print(f"[bench {elapsed:6.0f}s] {message}", file=sys.stderr, flush=True)


class _Entry:
    """One model of the round-robin: its train and inference callables."""

    def __init__(self, spec, params, train, infer, jit_compile, build_s, predict):
        self.spec = spec
        self.params = params
        self.train = train
        self.infer = infer
        self.predict = predict
        self.jit_compile = jit_compile
        self.build_s = build_s
        self.times = {phase: [] for phase in PHASES}


def _build_entries(family, specs, config, images, labels, progress):
    import keras

    keras.utils.set_random_seed(0)
    entries = {}
    for index, spec in enumerate(specs, start=1):
        progress(f"{family.name}: building {spec.name} ({index}/{len(specs)})")
        start = time.perf_counter()
        if spec.framework == "torch":
            from benchmarks.torch_reference import TorchRunner, calibrate_batchnorm

            net = models.build_torch(family, spec, config["classes"])
            import torch

            # BatchNorm statistics from the batch: sane eval-mode logits for the check.
            calibrate_batchnorm(net, torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
            runner = TorchRunner(
                net,
                images,
                labels,
                memory_format=spec.data_format,
                precision=config["precision"],
                learning_rate=models.LEARNING_RATE,
            )
            entry = _Entry(
                spec,
                models.count_params(net),
                runner.train_step,
                runner.predict,
                False,
                time.perf_counter() - start,
                runner.predict,
            )
            entry.net = net
        else:
            model = models.build_keras(family, spec, config["size"], config["classes"])
            jit = models.compile_keras(model, config["jit_compile"])
            x, y = models.keras_inputs(spec, images, labels)
            entry = _Entry(
                spec,
                models.count_params(model),
                lambda m=model, x=x, y=y: m.train_on_batch(x, y),
                lambda m=model, x=x: m.predict_on_batch(x),
                jit,
                time.perf_counter() - start,
                lambda m=model, x=x: np.asarray(m.predict_on_batch(x), dtype="float32"),
            )
            entry.model = model
        entries[spec.name] = entry
    return entries


def _check_torch_twins(entries, config, progress):
    """Gives every model of one attention the weights of the first plain-PyTorch
    network of that attention (the reference), then compares eval-mode logits
    with it, before any timing: keras_ba twins through
    `keras_ba.convert.load_torch_weights`, other PyTorch layouts (`:cl`) through
    `load_state_dict`.

    Returns:
        `{model name: {"reference", "max_abs_diff", "max_abs_logit"}}`.

    Raises:
        BenchmarkError: when float32 logits differ by more than the tolerance.
    """
    import torch

    from benchmarks.torch_reference import numpy_state_dict
    from keras_ba.convert import load_torch_weights

    references = {}
    for entry in entries.values():
        if entry.spec.framework == "torch":
            references.setdefault(entry.spec.attention, entry)
    checks = {}
    for attention, reference in references.items():
        state = numpy_state_dict(reference.net)
        expected = reference.predict()
        scale = float(np.abs(expected).max())
        for entry in entries.values():
            if entry is reference or entry.spec.attention != attention:
                continue
            if entry.spec.framework == "keras_ba":
                load_torch_weights(entry.model, state)
            elif entry.spec.framework == "torch":
                entry.net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
            else:
                continue
            diff = float(np.abs(entry.predict() - expected).max())
            checks[entry.spec.name] = {
                "reference": reference.spec.name,
                "max_abs_diff": diff,
                "max_abs_logit": scale,
            }
            progress(
                f"{entry.spec.name} vs {reference.spec.name}: max abs logits diff {diff:.2e} "
                f"(logits up to {scale:.2f})"
            )
            tolerance = LOGITS_TOLERANCE[config["device"]] * max(1.0, scale)
            if config["precision"] == "float32" and not diff <= tolerance:
                raise BenchmarkError(
                    f"{entry.spec.name} and plain PyTorch {reference.spec.name} compute different "
                    f"functions: max abs logits difference {diff:.3g} (logits up to {scale:.3g})"
                )
    return checks


def _run_rounds(family, entries, config, progress):
    names = list(entries)
    total = config["warmup"] + config["rounds"]
    for round_index in range(total):
        order = rotated(names, round_index)
        warm = round_index < config["warmup"]
        report = []
        for phase in PHASES:
            for name in order:
                entry = entries[name]
                call = entry.train if phase == "train" else entry.infer
                start = time.perf_counter()
                call()
                elapsed = time.perf_counter() - start
                if not warm:
                    entry.times[phase].append(elapsed)
                report.append(f"{phase} {name} {elapsed * 1e3:.0f}")
        label = "warm-up" if warm else "measured"
        progress(
            f"{family.name} round {round_index + 1}/{total} ({label}): " + ", ".join(report) + " ms"
        )


# === Fresh-process probes ===


def _probe_env(config):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if config["device"] == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "true"  # TensorFlow's CPU allocator counts only then
    return env


def run_probe(family_name, variant, config, backend):
    """Runs `benchmarks.probe` for one model in a fresh process; returns its dict.

    Raises:
        RuntimeError: when the child fails (its last output lines are included).
    """
    from benchmarks.probe import MARKER

    spec = {
        "family": family_name,
        "variant": variant,
        "size": config["size"],
        "batch": config["batch"],
        "classes": config["classes"],
        "precision": config["precision"],
        "jit_compile": config["jit_compile"],
        "device": config["device"],
        "memory_steps": 2,
    }
    env = _probe_env(config)
    env["KERAS_BACKEND"] = backend
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.probe", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
    raise RuntimeError(f"probe of {family_name}/{variant} failed (exit {done.returncode}):\n{tail}")


def _memory_measure(config, backend):
    """`(field of the probe result, description)` of the peak-memory measure."""
    if config["device"] == "gpu":
        return "allocator_peak_bytes", "peak of the GPU allocator (weights, optimizer state, steps)"
    if backend == "jax":
        return "xla_peak_bytes", "XLA buffer assignment of the compiled train step"
    if backend == "tensorflow":
        return (
            "allocator_peak_bytes",
            "peak of TensorFlow's CPU (BFC) allocator over build and steps",
        )
    return (
        "rss_peak_bytes",
        "process resident-set peak over build and steps minus its size after imports",
    )


def _run_probes(family, names, config, backend, progress):
    key, _ = _memory_measure(config, backend)
    probes = {name: [] for name in names}
    for repeat in range(config["probe_repeats"]):
        for name in rotated(names, repeat):
            progress(
                f"{family.name}: fresh process for {name} (repeat {repeat + 1}/{config['probe_repeats']})"
            )
            result = run_probe(family.name, name, config, backend)
            result["memory_bytes"] = result.get(key)
            probes[name].append(result)
            memory = result["memory_bytes"]
            memory = "n/a" if memory is None else f"{_mebibytes(memory)} MiB"
            progress(
                f"{family.name} {name}: startup {result['startup_s']:.1f} s "
                f"(build {result['build_s']:.1f} s), peak memory {memory}"
            )
    return probes


def _median_probe(results):
    merged = dict(results[0])
    for field in ("import_s", "build_s", "first_step_s", "startup_s", "memory_bytes"):
        values = [r[field] for r in results if r.get(field) is not None]
        merged[field] = float(np.median(values)) if values else None
    merged["repeats"] = results
    return merged


# === Putting it together ===


def _family_ratios(times, probes, baselines):
    """Ratio summaries `{kind: {model: {baseline: summary}}}` for the train and
    inference rounds and, when probed, start-up time and peak memory."""
    ratios = {"train": {}, "infer": {}, "startup": {}, "memory": {}}
    for name, own_times in times.items():
        for base in baselines:
            for phase in PHASES:
                ratios[phase].setdefault(name, {})[base] = ratio_summary(
                    own_times[phase], times[base][phase]
                )
            if probes:
                for field, kind in (("startup_s", "startup"), ("memory_bytes", "memory")):
                    own = [r[field] for r in probes[name]]
                    ref = [r[field] for r in probes[base]]
                    if None not in own + ref and min(ref) > 0:
                        ratios[kind].setdefault(name, {})[base] = ratio_summary(own, ref)
    return ratios


def _label(spec, family):
    """Row label: the variant name, and what it is where the name does not say."""
    if spec.framework == "keras":
        notes = [f"keras.applications.{family.keras_app}"]
    elif spec.framework == "torch":
        notes = ["plain PyTorch"]
    else:
        notes = ["no attention"] if spec.attention is None else []
    if spec.data_format != ("channels_first" if spec.framework == "torch" else "channels_last"):
        notes.append(spec.data_format)
    return f"{spec.name} ({', '.join(notes)})" if notes else spec.name


def measure_family(family_name, config, backend, progress):
    """Builds, checks, times and probes one family; returns its results dict."""
    import keras

    family = models.FAMILIES[family_name]
    specs, skipped = [], []
    for name in config["variants"]:
        spec = models.parse_variant(name)
        try:
            models.check_variant(family, spec)
        except ValueError as error:
            progress(f"skipping: {error}")
            skipped.append(name)
            continue
        specs.append(spec)
    if not specs:
        raise BenchmarkError(
            f"no variant of {config['variants']} exists for family {family_name!r}"
        )
    keras.backend.clear_session()
    images, labels = models.make_batch(config["batch"], config["size"], config["classes"])
    entries = _build_entries(family, specs, config, images, labels, progress)
    torch_check = _check_torch_twins(entries, config, progress)
    _run_rounds(family, entries, config, progress)
    names = list(entries)
    baselines = [b for b in config["baselines"] if b in entries]
    times = {name: entry.times for name, entry in entries.items()}
    model_results = {
        name: {
            "label": _label(entry.spec, family),
            "framework": entry.spec.framework,
            "attention": entry.spec.attention,
            "data_format": entry.spec.data_format,
            "params": entry.params,
            "jit_compile": entry.jit_compile,
            "build_s": entry.build_s,
            "train_ms": _time_summary(entry.times["train"]),
            "infer_ms": _time_summary(entry.times["infer"]),
            "probe": None,
        }
        for name, entry in entries.items()
    }
    del entries  # free the models before the fresh processes run
    keras.backend.clear_session()
    gc.collect()
    probes = None
    if config["probes"]:
        probes = _run_probes(family, names, config, backend, progress)
        for name in names:
            model_results[name]["probe"] = _median_probe(probes[name])
    return {
        "title": family.title,
        "baselines": baselines,
        "skipped_variants": skipped,
        "models": model_results,
        "ratios": _family_ratios(times, probes, baselines),
        "torch_check": torch_check,
        "probes": bool(probes),
        "memory_measure": _memory_measure(config, backend)[1] if probes else None,
    }


def _time_summary(seconds):
    ms = np.asarray(seconds) * 1e3
    return {
        "median": float(np.median(ms)),
        "min": float(ms.min()),
        "max": float(ms.max()),
        "rounds": [float(t) for t in ms],
    }


def run(config, progress=None):
    """Runs the benchmark described by `config` (see `resolve_config`).

    Returns:
        The results dict (what `--json` writes).
    """
    progress = progress or _Progress(quiet=True)
    _hide_gpus_before_import(config["device"])
    import keras

    backend = keras.backend.backend()
    if config["torch_variants"] and backend != "torch":
        raise BenchmarkError(
            f"the plain-PyTorch variants {config['torch_variants']} run only under "
            f"KERAS_BACKEND=torch (this process runs {backend}: one process per backend)"
        )
    channels_first = [
        v
        for v in config["variants"]
        if models.parse_variant(v).framework != "torch"
        and models.parse_variant(v).data_format == "channels_first"
    ]
    if backend == "tensorflow" and config["device"] == "cpu" and channels_first:
        raise BenchmarkError(
            f"TensorFlow has no channels_first convolution on CPU: drop {channels_first} "
            "or use --device gpu"
        )
    machine = describe_machine(backend, config["device"])
    previous_policy = keras.config.dtype_policy().name
    if config["precision"] != "float32":
        keras.config.set_dtype_policy(f"mixed_{config['precision']}")
    results = {
        "tool": "benchmarks.speed",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "backend": backend,
        "machine": machine,
        "versions": {},
        "config": dict(config),
        "environment": {
            k: os.environ[k]
            for k in ("JAX_COMPILATION_CACHE_DIR", "XLA_FLAGS", "TF_XLA_FLAGS", "OMP_NUM_THREADS")
            if k in os.environ
        },
        "families": {},
    }
    try:
        for family_name in config["families"]:
            results["families"][family_name] = measure_family(
                family_name, config, backend, progress
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)
    machine["load_end"] = _load()
    results["versions"] = _versions()
    _check_finite(results)
    return results


def _check_finite(results):
    for family in results["families"].values():
        for kind, table in family["ratios"].items():
            for name, row in table.items():
                for base, summary in row.items():
                    if not all(math.isfinite(v) and v > 0 for v in summary["rounds"]):
                        raise RuntimeError(f"non-finite {kind} ratio {name}/{base}: {summary}")


def main(argv=None):
    """Command-line entry point; returns the results dict."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = resolve_config(args)
    except ValueError as error:
        parser.error(str(error))
    progress = _Progress(args.quiet)
    try:
        results = run(config, progress)
    except BenchmarkError as error:
        print(f"python -m benchmarks.speed: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(format_markdown(results), end="", flush=True)
    if args.json:
        write_json(args.json, results)
        progress(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
