"""One helper that runs the whole Keras layer contract for a configuration.

Config and serialization round trips, build with expected weight counts,
symbolic and eager calls, `compute_output_shape`, a `.keras` round trip with
`safe_mode=True`, and a `fit()` step in which every trainable weight moves
(a weight that never moves is a branch computed but unused).
"""

import numpy as np
from keras import Input, Model, layers, ops, optimizers, saving


def to_numpy(x):
    return ops.convert_to_numpy(x)


def random_inputs(shapes, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch,) + tuple(s)).astype("float32") for s in shapes]


def _model_around(layer, shapes):
    inputs = [Input(shape) for shape in shapes]
    x = layer(inputs)
    x = layers.Flatten()(x)
    return Model(inputs, layers.Dense(1)(x))


def run_layer_contract(
    layer_cls,
    init_kwargs,
    input_shapes,
    expected_output_shape,
    expected_num_trainable,
    expected_num_non_trainable,
    tmp_path,
    frozen_weights=(),
):
    """Checks a list-input layer end to end.

    Args:
        input_shapes: per-feature shapes without the batch axis.
        expected_output_shape: output shape without the batch axis.
        frozen_weights: substrings of weight paths allowed not to move in a
            training step (with the reason stated by the caller).
    """
    # Config round trips: constructor arguments only, stable through both.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    assert layer_cls.from_config(config).get_config() == config
    restored = saving.deserialize_keras_object(saving.serialize_keras_object(layer))
    assert restored.get_config() == config
    assert saving.serialize_keras_object(layer)["registered_name"].startswith("keras_ba>")

    # Symbolic call and compute_output_shape.
    symbolic = [Input(shape) for shape in input_shapes]
    output = layer(symbolic)
    assert tuple(output.shape) == (None,) + tuple(expected_output_shape)
    shapes_with_batch = [(None,) + tuple(s) for s in input_shapes]
    assert tuple(layer.compute_output_shape(shapes_with_batch)) == tuple(output.shape)
    assert len(layer.trainable_weights) == expected_num_trainable
    assert len(layer.non_trainable_weights) == expected_num_non_trainable
    assert all("." not in w.path for w in layer.weights)

    # Eager call on concrete data.
    eager = layer_cls(**init_kwargs)
    data = random_inputs(input_shapes)
    result = to_numpy(eager(data))
    assert result.shape == (4,) + tuple(expected_output_shape)
    assert np.all(np.isfinite(result))

    # A fit step moves every trainable weight.
    model = _model_around(layer_cls(**init_kwargs), input_shapes)
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    before = [to_numpy(w) for w in model.trainable_weights]
    targets = np.random.default_rng(1).normal(size=(4, 1)).astype("float32")
    history = model.fit(data, targets, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for weight, old in zip(model.trainable_weights, before, strict=True):
        if any(tag in weight.path for tag in frozen_weights):
            continue
        assert not np.allclose(to_numpy(weight), old), f"{weight.path} got no gradient"

    # .keras round trip in safe mode.
    path = str(tmp_path / "layer_model.keras")
    model.save(path)
    loaded = saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(to_numpy(loaded(data)), to_numpy(model(data)), rtol=1e-6, atol=1e-6)
    return model
