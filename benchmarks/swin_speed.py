"""Speed and memory of BA-Swin-T: Bridge Attention vs SE vs none (the official Swin-T).

    KERAS_BACKEND=jax python -m benchmarks.swin_speed [--batch 8] [--json out.json]

`benchmarks.speed` on the `swin-t` family at 224 x 224 (Swin's window
layout fixes the input size): every variant in one process, train and
inference steps interleaved with the order rotated each round, ratios of
step time per round against no attention (the official model) and SE; then
one fresh process per model for the time to the first step and the peak
memory, with their ratios (`--no-probes` skips them). Any
`benchmarks.speed` option may be added; `--families swin-tiny --size 32` is
a seconds-long smoke run.

Example:
>>> default_argv([])[:4]
['--families', 'swin-t', '--variants', 'none']
"""

import sys

from benchmarks import speed

VARIANTS = ["none", "se", "bav1", "bav2"]
BASELINES = ["none", "se"]


def default_argv(argv):
    """`benchmarks.speed` arguments: Swin-T, BA/SE/none, 224 px, then `argv`.

    Later options win (argparse), so `argv` can override any default.

    Example:
    >>> default_argv(["--batch", "4"])[-2:]
    ['--batch', '4']
    """
    return [
        "--families",
        "swin-t",
        "--variants",
        *VARIANTS,
        "--baselines",
        *BASELINES,
        "--size",
        "224",
        *argv,
    ]


def main(argv=None):
    """Runs the benchmark; returns `benchmarks.speed.main`'s results dict."""
    return speed.main(default_argv(sys.argv[1:] if argv is None else list(argv)))


if __name__ == "__main__":
    main()
