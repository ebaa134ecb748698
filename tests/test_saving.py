"""`.keras` files with keras_ba objects load in a process that has imported nothing else.

`import keras_ba` imports no Keras (the CLI starts fast), so registration of
the custom classes is explicit: `keras_ba.load_model` imports what a file
names, and `import keras, keras_ba` registers the layers and models.
"""

import json

import keras
import numpy as np
import pytest
from conftest import BACKEND, run_python

from keras_ba.applications import BAEfficientNetBackbone, BAResNet
from keras_ba.saving import keras_ba_modules, load_model

TINY_BLOCKS = [
    dict(kernel_size=3, repeats=1, filters_in=16, filters_out=8, expand_ratio=1,
         id_skip=True, strides=1, se_ratio=0.25),
]  # fmt: skip


def _tiny_backbone_file(tmp_path):
    backbone = BAEfficientNetBackbone(
        0.25, 1.0, blocks_args=TINY_BLOCKS, attention="bav1", image_shape=(32, 32, 3)
    )
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    return path, sorted(backbone.pyramid_outputs)


def test_the_modules_a_file_names_are_found(tmp_path):
    path, _ = _tiny_backbone_file(tmp_path)
    modules = keras_ba_modules(path)
    assert modules == ["keras_ba.applications.efficientnet"]  # a backbone saves its arguments
    assert keras_ba_modules(tmp_path / "missing.keras") == []


def test_load_model_reads_the_file(tmp_path):
    model = BAResNet([1], [8], block_type="basic", stem="cifar", stem_filters=8,
                     reduction=4, input_shape=(8, 8, 3), classes=3)  # fmt: skip
    path = tmp_path / "m.keras"
    model.save(path)
    assert "keras_ba.layers.bridge_attention" in keras_ba_modules(path)  # a functional graph
    x = np.random.rand(2, 8, 8, 3).astype("float32")
    again = load_model(path, compile=False)
    outputs = [keras.ops.convert_to_numpy(m(x)) for m in (again, model)]
    np.testing.assert_allclose(*outputs, atol=1e-6)


FRESH = """
import json, sys
{imports}
model = {load}(sys.argv[1], safe_mode=True)
print(json.dumps([type(model).__name__, sorted(model.pyramid_outputs)]))
"""


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="one fresh process per spelling, in the TF pass"
)
@pytest.mark.parametrize(
    "imports, load",
    [
        ("import keras_ba", "keras_ba.load_model"),
        ("import keras, keras_ba", "keras.saving.load_model"),
    ],
    ids=["keras_ba.load_model", "import-keras-first"],
)
def test_a_fresh_process_loads_a_backbone(tmp_path, imports, load):
    path, expected_levels = _tiny_backbone_file(tmp_path)
    code = f"import sys; sys.argv = ['x', {str(path)!r}]\n" + FRESH.format(
        imports=imports, load=load
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    name, levels = json.loads(result.stdout.strip().splitlines()[-1])
    assert name == "BAEfficientNetBackbone"
    assert levels == expected_levels
