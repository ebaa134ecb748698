"""Data: the embedded digits, image folders and local TFDS datasets as
tf.data pipelines for every backend, their checks, transforms and training
augmentation.

- `pipeline`: `DataSource`, `load_splits`, `train_dataset`, `eval_dataset`;
- `transforms`: normalization, center crop and the evaluation transform
  (TensorFlow ops; also used by the exported signature);
- `augment`: training augmentation applied layer by layer in tf.data (Keras core
  layers where they compute what the recipes need, keras-cv for the rest).

Example:
    from keras_ba.data import DataSource, load_splits
    splits = load_splits(DataSource("digits"), load_size=32)
"""

from keras_ba.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    "keras_ba.data",
    {
        "DataSource": "keras_ba.data.pipeline",
        "load_splits": "keras_ba.data.pipeline",
        "train_dataset": "keras_ba.data.pipeline",
        "eval_dataset": "keras_ba.data.pipeline",
        "eval_transform": "keras_ba.data.transforms",
        "normalize": "keras_ba.data.transforms",
    },
)
