"""One model in a fresh process: time to first train step and peak memory.

Run by `benchmarks.speed` once per model (never imported by it), because both
measures depend on the process: what is already compiled or cached, what the
allocator holds. The child imports the backend, builds the model, compiles it,
runs the first train step (timed: build, compile and step together, imports
apart), then `memory_steps` more steps, and prints one line
`BENCH_PROBE {json}` with:

- `import_s`, `build_s`, `first_step_s` (compile + first step), `startup_s`
  (build + first step: "time to first step" in the tables);
- `allocator_peak_bytes`: the backend allocator's peak over the process's
  life (weights, optimizer state, the steps' activations and temporaries):
  on a GPU TensorFlow `get_memory_info`, `torch.cuda.max_memory_allocated`,
  JAX `memory_stats()["peak_bytes_in_use"]`; on CPU only TensorFlow has one,
  and only with its BFC allocator, which `benchmarks.speed` turns on for the
  TensorFlow child (`TF_CPU_ALLOCATOR_USE_BFC=true`; TensorFlow's default CPU
  allocator reports nothing);
- `xla_peak_bytes` under JAX: XLA's own buffer assignment of the compiled
  train step (`jax.jit(...).lower(...).compile().memory_analysis()`:
  arguments + outputs - donated aliases + temporaries), exact and free of
  process noise;
- `rss_peak_bytes`: peak resident memory of the process after the imports
  (Linux `VmHWM`, reset through `/proc/self/clear_refs` once the imports
  are done; None where that is not possible) minus its resident memory
  then: everything above plus what the runtime keeps (compiled code, caches,
  allocator slack). The measure for PyTorch on CPU, which has no allocator
  statistics.

The TensorFlow child's BFC allocator also serves its start-up steps; it is
the allocator TensorFlow uses on GPUs anyway.

Usage (what `benchmarks.speed` runs):
    python -m benchmarks.probe '{"family": "resnet50", "variant": "bav1", "size": 128,
        "batch": 8, "classes": 1000, "precision": "float32", "jit_compile": "auto",
        "device": "cpu", "memory_steps": 2}'
"""

import time

_T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

MARKER = "BENCH_PROBE "


def _reset_peak_rss():
    """Restarts the kernel's resident-set high-water mark (Linux >= 4.0), so
    that the peak of the imports does not count; False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes():
    """Resident-set high-water mark (`VmHWM`) of this process, in bytes."""
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _allocator_peak(backend):
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"]
        if os.environ.get("TF_CPU_ALLOCATOR_USE_BFC", "").lower() in ("1", "true"):
            return tf.config.experimental.get_memory_info("CPU:0")["peak"] or None
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated()
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return (device.memory_stats() or {}).get("peak_bytes_in_use")
    return None


def _xla_peak(model, x, y):
    """XLA's peak buffer memory of the model's compiled train step (JAX only)."""
    import jax

    state = model._get_jax_state(  # the state tuple train_on_batch hands to its jitted step
        trainable_variables=True,
        non_trainable_variables=True,
        optimizer_variables=True,
        metrics_variables=True,
    )
    stats = jax.jit(model.train_step, donate_argnums=0).lower(state, (x, y, None)).compile()
    stats = stats.memory_analysis()
    if stats is None:
        return None
    peak = getattr(stats, "peak_memory_in_bytes", 0)
    if not peak:
        peak = (
            stats.argument_size_in_bytes
            + stats.output_size_in_bytes
            - stats.alias_size_in_bytes
            + stats.temp_size_in_bytes
        )
    return int(peak)


def probe(spec):
    """Measures one model as described in the module docstring; returns a dict."""
    import keras

    from benchmarks import models

    backend = keras.backend.backend()
    if backend == "torch" or models.parse_variant(spec["variant"]).framework == "torch":
        import torch  # noqa: F401  (counted in the imports, as a user's script would)
    peak_reset = _reset_peak_rss()
    rss_imported = _peak_rss_bytes()  # = the resident size now, read as the peak will be
    t_imported = time.perf_counter()

    family = models.FAMILIES[spec["family"]]
    variant = models.parse_variant(spec["variant"])
    images, labels = models.make_batch(spec["batch"], spec["size"], spec["classes"])
    result = {"family": family.name, "variant": variant.name, "backend": backend}
    previous_policy = keras.config.dtype_policy().name
    if spec["precision"] != "float32":
        keras.config.set_dtype_policy(f"mixed_{spec['precision']}")
    try:
        keras_step = _run(spec, family, variant, images, labels, result)
        result.update(
            import_s=t_imported - _T0,
            build_s=result.pop("_t_built") - t_imported,
            startup_s=result.pop("_t_first") - t_imported,
            rss_peak_bytes=_peak_rss_bytes() - rss_imported if peak_reset else None,
            allocator_peak_bytes=_allocator_peak(backend),
            xla_peak_bytes=None,
        )
        result["first_step_s"] = result["startup_s"] - result["build_s"]
        if backend == "jax" and keras_step is not None:  # after the peaks: it may compile
            result["xla_peak_bytes"] = _xla_peak(*keras_step)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return result


def _run(spec, family, variant, images, labels, result):
    """Builds, compiles and steps the model, recording times in `result`.

    Returns `(model, x, y)` for a Keras model, None for plain PyTorch.
    """
    import numpy as np

    from benchmarks import models

    if variant.framework == "torch":
        from benchmarks.torch_reference import TorchRunner

        net = models.build_torch(family, variant, spec["classes"])
        t_built = time.perf_counter()
        runner = TorchRunner(
            net,
            images,
            labels,
            memory_format=variant.data_format,
            precision=spec["precision"],
            learning_rate=models.LEARNING_RATE,
        )
        step = runner.train_step
        result["jit_compile"] = False
        result["params"] = models.count_params(net)
    else:
        model = models.build_keras(family, variant, spec["size"], spec["classes"])
        t_built = time.perf_counter()
        result["jit_compile"] = models.compile_keras(model, spec["jit_compile"])
        result["params"] = models.count_params(model)
        x, y = models.keras_inputs(variant, images, labels)

        def step():
            return model.train_on_batch(x, y)

    first_loss = step()
    t_first = time.perf_counter()
    for _ in range(spec.get("memory_steps", 2)):
        step()
    result.update(_t_built=t_built, _t_first=t_first, first_loss=float(np.asarray(first_loss)))
    return None if variant.framework == "torch" else (model, x, y)


def main(argv=None):
    """Entry point: `python -m benchmarks.probe JSON_SPEC`."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m benchmarks.probe JSON_SPEC")
    print(MARKER + json.dumps(probe(json.loads(argv[0]))), flush=True)


if __name__ == "__main__":
    main()
