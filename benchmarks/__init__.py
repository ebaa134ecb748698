"""Benchmarks of keras_ba (not part of the installed package).

- `python -m benchmarks.speed`: interleaved train/inference step time, time
  to first step and peak memory of BA vs SE vs no attention vs
  keras.applications, per backend (see README "Speed").
- `benchmarks.torch_reference`: the plain-PyTorch BA-ResNet yardstick.
- `python -m benchmarks.param_table`: parameter and FLOP table against the
  authors' models.
"""
