"""Forward + backward cost of one attention layer, before and after issue 14's changes.

A yardstick for the layer-level changes (never imported by the package):
one layer per ResNet-50 stage (128 px input, batch 8: features of
32x32x64, 32x32x64, 32x32x256 up to 4x4x512, 4x4x512, 4x4x2048), a train-mode
forward and backward (`mean(y**2)`), variants interleaved round-robin in one
process. `--cpu-time` measures the process' CPU time instead of wall time
(steadier on a shared machine); PyTorch then runs one thread.

| variant | layer |
|---|---|
| `none` | `y = x_n` (the loss alone) |
| `se`, `v1`, `v2` | `SqueezeExcite`, `BridgeAttention(version=...)` as they are |
| `se-unfused`, `v1-unfused`, `v2-unfused` | the same weights through the arithmetic before issue 14: `ops.mean` pooling, one nested `Dense` / `BatchNormalization` call per branch |

Example:
    KERAS_BACKEND=torch python -m benchmarks.attention_layers --cpu-time
"""

import argparse
import statistics
import time

import numpy as np

VARIANTS = ("none", "se-unfused", "se", "v1-unfused", "v1", "v2-unfused", "v2")
STAGES = ((32, 64, 256), (16, 128, 512), (8, 256, 1024), (4, 512, 2048))


def _unfused_classes():
    from keras import ops

    from keras_ba.layers import BridgeAttention, SqueezeExcite

    class UnfusedBridgeAttention(BridgeAttention):
        def call(self, inputs, training=None, return_attention_scores=False):
            features = list(inputs)
            squeezed = [
                dense(ops.mean(f, axis=(1, 2)))
                for dense, f in zip(self.squeeze_layers, features, strict=True)
            ]
            if self.version == "v1":
                normed = [
                    norm(v, training=training)
                    for norm, v in zip(self.squeeze_norms, squeezed, strict=True)
                ]
                integrated = normed[0]
                for v in normed[1:]:
                    integrated = integrated + v
            else:
                stacked = ops.stack(squeezed, axis=-1)
                integrated = ops.squeeze(self.selection(stacked), axis=-1)
                integrated = self.norm(integrated, training=training)
            weights = self._gate(self.excitation(self._hidden(integrated)))
            return features[-1] * weights[:, None, None, :]

    class UnfusedSqueezeExcite(SqueezeExcite):
        def call(self, inputs, return_attention_scores=False):
            feature = inputs[-1]
            pooled = ops.mean(feature, axis=(1, 2))
            weights = self._gate(self.excitation(self._hidden(self.squeeze(pooled))))
            return feature * weights[:, None, None, :]

    return UnfusedBridgeAttention, UnfusedSqueezeExcite


def make_layer(variant):
    """The layer of `variant` (None for `none`)."""
    from keras_ba.layers import BridgeAttention, SqueezeExcite

    unfused_ba, unfused_se = _unfused_classes()
    if variant == "none":
        return None
    if variant.startswith("se"):
        return (unfused_se if variant.endswith("unfused") else SqueezeExcite)(reduction=16)
    cls = unfused_ba if variant.endswith("unfused") else BridgeAttention
    return cls(version=variant[:2], reduction=16)


def make_step(layer, features):
    """A callable running forward + backward of `layer` on `features` once."""
    import keras
    from keras import ops

    from keras_ba.layers import BridgeAttention

    kwargs = {"training": True} if isinstance(layer, BridgeAttention) else {}
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        xs = [torch.tensor(f, requires_grad=True) for f in features]

        def step():
            y = layer(xs, **kwargs) if layer is not None else xs[-1] * 1.0
            loss = y.square().mean()
            loss.backward()
            return float(loss)

        return step
    if backend == "jax":
        import jax

        def loss_fn(trainable, non_trainable, xs):
            if layer is None:
                return ops.mean(ops.square(xs[-1])), non_trainable
            y, non_trainable = layer.stateless_call(trainable, non_trainable, xs, **kwargs)
            return ops.mean(ops.square(y)), non_trainable

        trainable = [v.value for v in layer.trainable_variables] if layer else []
        non_trainable = [v.value for v in layer.non_trainable_variables] if layer else []
        grad = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 2), has_aux=True))
        xs = [jax.numpy.asarray(f) for f in features]
        return lambda: float(grad(trainable, non_trainable, xs)[0][0])
    import tensorflow as tf

    xs = [tf.constant(f) for f in features]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(xs)
            y = layer(xs, **kwargs) if layer is not None else xs[-1] * 1.0
            loss = tf.reduce_mean(tf.square(y))
        tape.gradient(loss, xs + (layer.trainable_variables if layer else []))
        return loss

    return lambda: float(step())


def run(variants, rounds, warmup, cpu_time, batch=8):
    """Median per-round time of each variant and its ratio to the first one."""
    clock = time.process_time if cpu_time else time.perf_counter
    rng = np.random.default_rng(0)
    steps = {}
    for variant in variants:
        per_stage = []
        for side, width, channels in STAGES:
            shapes = [(batch, side, side, width)] * 2 + [(batch, side, side, channels)]
            features = [rng.normal(size=s).astype("float32") for s in shapes]
            layer = make_layer(variant)
            if layer is not None:
                layer.build([f.shape for f in features])
            per_stage.append(make_step(layer, features))
        steps[variant] = per_stage
    times = {v: [] for v in variants}
    for index in range(warmup + rounds):
        shift = index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            start = clock()
            for step in steps[variant]:
                step()
            if index >= warmup:
                times[variant].append(clock() - start)
    base = variants[0]
    return {
        v: (
            statistics.median(times[v]),
            statistics.median(a / b for a, b in zip(times[v], times[base], strict=True)),
        )
        for v in variants
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cpu-time", action="store_true")
    args = parser.parse_args(argv)
    import keras

    if args.cpu_time and keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(1)
    results = run(args.variants, args.rounds, args.warmup, args.cpu_time)
    clock = "CPU" if args.cpu_time else "wall"
    print(f"| variant | {clock} ms (4 layers, fwd+bwd) | vs {args.variants[0]} |")
    print("|---|---|---|")
    for variant, (seconds, ratio) in results.items():
        print(f"| {variant} | {seconds * 1e3:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
