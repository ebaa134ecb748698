"""The `serving_default` function shared by every export format.

Raw RGB images in [0, 255] of any size go in; inside, the same evaluation
preprocessing as `keras-ba evaluate` (central square crop, resize to
`image_size / crop_pct`, central crop, ImageNet mean/std); out come
`probabilities` float32 `[batch, classes]` and `class_ids` int32 `[batch]`.
The SavedModel, ONNX and LiteRT writers all trace this one function.
"""


def serving_function(model, image_size, crop_pct):
    """The `serving_default` function: raw RGB images -> probabilities.

    Example:
        fn = serving_function(model, 32, 1.0); fn(tf.zeros([1, 32, 32, 3]))
    """
    import tensorflow as tf

    from keras_ba.data.transforms import eval_transform

    softmax = model.layers[-1].get_config().get("activation") == "linear"

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def serve(images):
        x = eval_transform(images, image_size, crop_pct)
        outputs = tf.cast(model(x, training=False), tf.float32)
        probabilities = tf.nn.softmax(outputs) if softmax else outputs
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "class_ids": class_ids}

    return serve
