"""A BA-Swin backbone under the dense-task heads and the analysis tools.

Tiny configurations; the heads are KerasHub's DeepLabV3+ (through
`keras_ba.cv`) and the attention probe of `keras_ba.analysis`, both of
which take any keras_ba backbone: this checks that the transformers are
such backbones, with one attention layer per transformer block.
"""

import keras
import numpy as np
import pytest
from conftest import only_in

from keras_ba.applications import BASwinTransformer, BASwinTransformerClassifier
from keras_ba.layers import BridgeAttention

TINY = dict(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[2, 2, 2, 2], window_size=2, reduction=4)
SIZE = 64


def _images(count, seed=0):
    return np.random.default_rng(seed).normal(size=(count, SIZE, SIZE, 3)).astype("float32")


@only_in("torch", reason="the same graph on every backend: trained once, in the PyTorch pass")
def test_deeplab_v3_plus_on_a_ba_swin_backbone_trains():
    pytest.importorskip("keras_hub")
    from keras_ba import cv

    backbone = BASwinTransformer(**TINY, image_shape=(SIZE, SIZE, 3))
    assert set(backbone.pyramid_outputs) == {"P2", "P3", "P4", "P5"}
    model = cv.build_deeplab_v3_plus(backbone, 3, projection_filters=8, dilation_rates=(1, 2))
    x = _images(4)
    masks = np.eye(3, dtype="float32")[np.random.default_rng(1).integers(0, 3, (4, SIZE, SIZE))]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    before = [keras.ops.convert_to_numpy(w).copy() for w in backbone.trainable_weights]
    history = model.fit(x, masks, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    moved = [
        not np.allclose(b, keras.ops.convert_to_numpy(w))
        for b, w in zip(before, backbone.trainable_weights, strict=True)
    ]
    assert sum(moved) > 0.9 * len(moved)  # the head's gradients reach the transformer
    out = keras.ops.convert_to_numpy(model.predict(x[:2], verbose=0))
    assert out.shape == (2, SIZE, SIZE, 3)


def test_attention_probe_gives_one_weight_vector_per_transformer_block():
    from keras_ba.analysis import attention_weights

    model = BASwinTransformerClassifier(
        **TINY, input_shape=(SIZE, SIZE, 3), classes=3, drop_path_rate=0.0
    )
    layers = [layer for layer in model.layers if isinstance(layer, BridgeAttention)]
    assert len(layers) == sum(TINY["depths"])  # one per block
    images = _images(3)
    result = attention_weights(model, images)
    assert list(result.layers) == [layer.name for layer in layers]
    # Independent path: a sub-model up to the layers' inputs, then each layer itself.
    probes = keras.Model(model.inputs[0], [layer.input for layer in layers])
    features = probes.predict_on_batch(images)
    for layer, inputs in zip(layers, features, strict=True):
        inputs = [keras.ops.convert_to_tensor(x) for x in inputs]
        _, scores = layer(inputs, return_attention_scores=True, training=False)
        expected = keras.ops.convert_to_numpy(scores)
        weights = result.weights[layer.name]
        assert weights.shape == (3, layer.input[-1].shape[-1])
        np.testing.assert_allclose(weights, expected, atol=1e-5)


@pytest.mark.slow
@only_in("torch", reason="the files written under PyTorch, loaded in one TensorFlow process")
def test_transformer_backbones_load_under_another_backend(tmp_path):
    from model_contract import check_all_load_under_other_backends, randomize_weights

    from keras_ba.applications import BACSWinBackbone, BAPVTBackbone

    pvt = dict(embed_dims=[8, 8, 16, 16], num_heads=[1, 1, 2, 2], mlp_ratios=[2, 2, 2, 2])
    pvt.update(sr_ratios=[4, 2, 1, 1], pos_embed_size=32, reduction=4)
    cswin = dict(embed_dim=8, num_heads=[2, 2, 2, 2], split_sizes=[2, 2, 2, 1], reduction=4)
    backbones = {
        "swin": BASwinTransformer(**TINY, image_shape=(SIZE, SIZE, 3)),
        "pvt": BAPVTBackbone(depths=[1, 1, 1, 1], **pvt, image_shape=(32, 32, 3)),
        "cswin": BACSWinBackbone(depths=[1, 1, 1, 1], **cswin, image_shape=(SIZE, SIZE, 3)),
    }
    sizes = {"swin": SIZE, "pvt": 32, "cswin": SIZE}
    cases = {}
    for name, backbone in backbones.items():
        randomize_weights(backbone)
        cases[name] = (backbone, _images(2)[:, : sizes[name], : sizes[name]])
    check_all_load_under_other_backends(cases, tmp_path, targets=["tensorflow"])
