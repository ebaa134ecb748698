"""Speed and memory of BA-RegNetY-4.0GF: Bridge Attention vs SE (timm's RegNet-Y) vs none.

    KERAS_BACKEND=jax python -m benchmarks.regnet_speed [--batch 8] [--json out.json]

`benchmarks.speed` on the `regnety040` family (224 x 224 by default):
every variant in one process, train and inference steps interleaved with
the order rotated each round, ratios of step time per round against SE
(the reference RegNet-Y block) and no attention; then one fresh process per
model for the time to the first step and the peak memory, with their ratios
(`--no-probes` skips them). Any `benchmarks.speed` option may be added;
`--families regnety-tiny --size 16` is a seconds-long smoke run.

Example:
>>> default_argv([])[:4]
['--families', 'regnety040', '--variants', 'none']
"""

import sys

from benchmarks import speed

VARIANTS = ["none", "se", "bav1", "bav2"]
BASELINES = ["se", "none"]


def default_argv(argv):
    """`benchmarks.speed` arguments: RegNetY-4.0GF, BA/SE/none, 224 px, then `argv`.

    Later options win (argparse), so `argv` can override any default.

    Example:
    >>> default_argv(["--size", "128"])[-2:]
    ['--size', '128']
    """
    return [
        "--families",
        "regnety040",
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
