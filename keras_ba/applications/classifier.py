"""A backbone plus a classification head, and `weights=` loading.

The classifier is flat: `keras.Model(backbone.input, head(backbone.output))`
holds the backbone's layers themselves (same objects, same weights, same
names), so `model.get_layer("conv2_block1_ba")` and weight transfer by layer
name work as in `keras.applications`.
"""

import os

import keras
from keras import layers

from keras_ba import _validation

POOLINGS = (None, "avg", "max")


def check_head_args(include_top, weights, pooling, classes, classifier_activation):
    """Validates the keras.applications-style arguments; returns `weights`' path.

    Example:
    >>> check_head_args(True, None, None, 10, "softmax") is None
    True
    """
    _validation.check_bool(include_top, "include_top")
    path = _validation.check_weights_path(weights)
    _validation.check_choice(pooling, "pooling", POOLINGS)
    _validation.check_positive_int(classes, "classes")
    _validation.check_activation(classifier_activation, "classifier_activation")
    return path


def build_application(
    backbone_cls,
    trunk,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    attention,
    reduction,
    data_format,
    name,
    **head,
):
    """A keras.applications-style builder's body: checks, backbone, head.

    Args:
        backbone_cls: the family's backbone class.
        trunk: the family's own backbone arguments.
        include_top ... name: the application arguments, in the order
            every keras_ba builder declares them.
        **head: `dropout_rate`, `top` (see `build_classifier`).

    Returns:
        The flat classifier.

    Example:
    >>> from keras_ba.applications import BAResNetBackbone
    >>> trunk = dict(stackwise_num_blocks=[1], stackwise_num_filters=[8],
    ...              block_type="basic", stem="cifar", stem_filters=8)
    >>> model = build_application(BAResNetBackbone, trunk, True, None, None,
    ...                           (8, 8, 3), None, 5, None, "se", 4, None, "tiny")
    >>> model.name, model.output_shape
    ('tiny', (None, 5))
    """
    path = check_head_args(include_top, weights, pooling, classes, classifier_activation)
    backbone = backbone_cls(
        **trunk,
        attention=attention,
        reduction=reduction,
        image_shape=input_shape,
        input_tensor=input_tensor,
        data_format=data_format,
        name=f"{name}_backbone",
    )
    return build_classifier(
        backbone,
        include_top=include_top,
        weights=path,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        **head,
    )


def build_classifier(
    backbone,
    *,
    include_top,
    weights,
    pooling,
    classes,
    classifier_activation,
    name,
    dropout_rate=None,
    top=None,
):
    """`backbone` + [`top`] + pooling, dropout and the `predictions` layer.

    Args:
        backbone: a `keras_ba` backbone (its layers become the model's).
        include_top: whether to end with `predictions`; otherwise `pooling`
            (`None`, `"avg"` or `"max"`) ends the model.
        weights: None or a checked weights path (`check_head_args`).
        classes, classifier_activation: of `predictions`.
        name: model name.
        dropout_rate: dropout before `predictions` (`top_dropout`).
        top: optional `top(backbone, features) -> tensor` applied first
            when `include_top` (MobileNetV3's `conv_2` head).

    Returns:
        A functional `keras.Model`. Under a mixed dtype policy
        `predictions` computes in float32 so that softmax and loss stay
        numerically safe.

    Example:
    >>> from keras_ba.applications import BAResNetBackbone
    >>> backbone = BAResNetBackbone([1], [8], block_type="basic", stem="cifar",
    ...                             stem_filters=8, reduction=4, image_shape=(8, 8, 3))
    >>> model = build_classifier(backbone, include_top=False, weights=None, pooling="max",
    ...                          classes=1, classifier_activation=None, name="trunk")
    >>> model.get_layer("conv2_block1_ba") is backbone.get_layer("conv2_block1_ba")
    True
    """
    policy = backbone.dtype_policy
    x = backbone.output
    data_format = backbone.data_format
    if include_top:
        if top is not None:
            x = top(backbone, x)
        x = layers.GlobalAveragePooling2D(data_format=data_format, dtype=policy, name="avg_pool")(x)
        if dropout_rate:
            x = layers.Dropout(dropout_rate, dtype=policy, name="top_dropout")(x)
        head_dtype = "float32" if policy.name.startswith("mixed") else policy
        x = layers.Dense(
            classes, activation=classifier_activation, dtype=head_dtype, name="predictions"
        )(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(data_format=data_format, dtype=policy, name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(data_format=data_format, dtype=policy, name="max_pool")(x)
    model = keras.Model(backbone.input, x, name=name)
    if weights is not None:
        load_weights(model, weights)
    return model


# === Weights ===


def load_weights(model, weights):
    """Fills `model` from a `.keras` or `.weights.h5` file, by layer name.

    Every layer with weights in `model` must find a layer of the same name
    and shapes in the file (a classifier's file also fits a model built with
    `include_top=False`). A `.keras` file is loaded as a model; a
    `.weights.h5` file is read by Keras into a clone of `model` (it must
    come from the same architecture). All checks run before any weight is
    assigned: a failed load leaves `model` untouched.

    Raises:
        ValueError: naming the missing or mismatched layers, or the class
            count of the file's classifier.

    Example:
    >>> load_weights(keras.Sequential([keras.Input((2,))]), None) is None
    True
    """
    if weights is None:
        return None
    path = os.fspath(weights)
    if path.endswith(".keras"):
        from keras_ba.saving import load_model

        source = load_model(path, compile=False, safe_mode=True)
        source_shapes = _weight_shapes(source)
    else:
        source, source_shapes = _read_weights_h5(model, path)
    sources = {layer.name: layer for layer in source.layers}
    pairs = _match_layers_by_name(model, source_shapes, path)
    for layer in pairs:
        layer.set_weights(sources[layer.name].get_weights())
    return model


def _weight_shapes(model):
    return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers}


def _read_weights_h5(model, path):
    """Keras' own loading into a clone of `model`, the classifier excepted.

    Keras hands every layer its stored arrays through the public
    `load_own_variables(store)`; the clone's `predictions` layer records
    their shapes and loads them only when they fit, so that a classifier
    for another class count is named in the error instead of failing inside
    Keras.
    """
    source = keras.models.clone_model(model)
    shapes = _weight_shapes(source)
    head = next((layer for layer in source.layers if layer.name == "predictions"), None)
    if head is not None:
        load_head = head.load_own_variables

        def load_if_it_fits(store):
            stored = [tuple(store[key].shape) for key in sorted(store.keys(), key=int)]
            shapes["predictions"] = stored
            if stored == [tuple(w.shape) for w in head.weights]:
                load_head(store)

        head.load_own_variables = load_if_it_fits
    try:
        source.load_weights(path)
    except ValueError as error:
        raise ValueError(
            f"The weights file {path!r} does not fit this architecture (was it "
            f"saved from another depth or `attention`?): {error}"
        ) from error
    return source, shapes


def _match_layers_by_name(target, source_shapes, path):
    """Layers of `target` to fill; raises before any assignment on problems."""
    pairs, missing, mismatched = [], [], []
    for layer in target.layers:
        if not layer.weights:
            continue
        found = source_shapes.get(layer.name) or None
        if found is None:
            missing.append(layer.name)
            continue
        target_shapes = [tuple(w.shape) for w in layer.weights]
        if target_shapes == found:
            pairs.append(layer)
        elif layer.name == "predictions":
            raise ValueError(
                f"The weights file {path!r} has a classifier for "
                f"{found[-1][0]} classes, but the model was built with "
                f"classes={target_shapes[-1][0]}. Build with "
                "include_top=False (and add your own head) or with the "
                "file's class count."
            )
        else:
            mismatched.append(f"{layer.name}: file {found} vs model {target_shapes}")
    if missing or mismatched:
        problems = [f"missing in file: {name}" for name in missing] + [
            f"shape mismatch: {item}" for item in mismatched
        ]
        raise ValueError(
            f"The weights file {path!r} does not fit this architecture "
            f"({len(problems)} problems; was it saved from another depth or "
            "`attention`?):\n  " + "\n  ".join(problems[:20])
        )
    return pairs
