"""`fit` for PyTorch DistributedDataParallel: the training loop of `--distribute ddp`.

Keras' own guide trains a Keras model under torch DDP with a custom loop;
this is that loop, written to behave like `Model.fit` for the callbacks of
`keras-ba train` (resume, CSV history, checkpoints, TensorBoard, NaN stop,
progress bar). Each step:

1. forward through `torch.nn.parallel.DistributedDataParallel(model)` on the
   process's local batch (`batch_size / N` images);
2. the compiled loss, `loss.backward()`: DDP averages the gradients over the
   processes during the backward pass;
3. the Keras optimizer applies them (`optimizer.apply`), as Keras' torch
   `train_step` does;
4. the loss is averaged over the processes (one small all-reduce), so the
   logs, `TerminateOnNaN` and every callback see the global-batch loss on
   every process and take the same decisions.

BatchNorm: with `sync_batch_norm=True` (the default) every
`BatchNormalization` layer computes its batch statistics over the global
batch (an all-reduce of the local means and squared means, differentiable,
as `torch.nn.SyncBatchNorm` does), so N processes train exactly like one
process on the whole batch; `False` keeps per-process statistics (plain DDP).

Differences from `fit`, all documented in the README:

- the progress bar of process 0 shows its own running accuracy; the epoch
  logs (history, TensorBoard, checkpoints' decisions) hold the global
  values: metric states are summed over the processes at the end of the
  epoch and of the validation;
- validation: each process evaluates every N-th validation image (all of
  them together, including the last partial batch);
- `steps_per_execution`, `class_weight`, `sample_weight` and
  `validation_freq` are not supported (keras-ba train uses none of them).

Example:
    history = fit(model, train_ds, val_ds, epochs=3, steps_per_epoch=10,
                  callbacks=cbs, group=group)
"""

import contextlib

import keras
import numpy as np

from keras_ba import _keras_compat
from keras_ba.training.distributed import launch as multiprocess


def _to_tensors(batch):
    return tuple(keras.ops.convert_to_tensor(np.asarray(part)) for part in batch)


def _floats(logs):
    return {k: float(keras.ops.convert_to_numpy(v)) for k, v in logs.items()}


def _all_reduce_mean(tensor, group):
    import torch.distributed as dist

    if not group.is_multi:
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor)
    return tensor / group.num_processes


def sum_metric_states(model, group):
    """Sums every metric variable of `model` over the processes (in place).

    Keras' metrics keep sums (`total` and `count` of `Mean` and of every
    `MeanMetricWrapper`, true/false positive counts...), so the summed state
    gives the metric of all processes' images together.

    Example:
        sum_metric_states(model, group); model.get_metrics_result()
    """
    import torch
    import torch.distributed as dist

    if not group.is_multi:
        return
    variables = [v for metric in model.metrics for v in metric.variables]
    if not variables:
        return
    flat = torch.cat([v.value.detach().reshape(-1).to(torch.float64) for v in variables])
    dist.all_reduce(flat)
    offset = 0
    for variable in variables:
        size = int(np.prod(variable.shape))
        part = flat[offset : offset + size].reshape(tuple(variable.shape))
        variable.assign(part.to(variable.value.dtype))
        offset += size


# === Synchronized BatchNorm ===


def _all_reduce_sum(tensor):
    """A differentiable all-reduce (sum): the backward pass sums the gradients too."""
    import torch
    import torch.distributed as dist

    class AllReduceSum(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value):
            value = value.clone()
            dist.all_reduce(value)
            return value

        @staticmethod
        def backward(ctx, gradient):
            gradient = gradient.clone()
            dist.all_reduce(gradient)
            return gradient

    return AllReduceSum.apply(tensor)


def _synchronized_moments(layer, group):
    import torch

    original = _keras_compat.original_moments(layer)

    def moments(inputs, mask):
        if mask is not None:
            return original(inputs, mask)
        axes = _keras_compat.reduction_axes(layer)
        mean = torch.mean(inputs, dim=axes)
        mean_square = torch.mean(torch.square(inputs), dim=axes)
        both = _all_reduce_sum(torch.cat([mean, mean_square])) / group.num_processes
        mean, mean_square = torch.split(both, mean.shape[0])
        # Keras' torch moments: E[x^2] - E[x]^2, the same formula over the global batch.
        return mean, mean_square - torch.square(mean)

    return moments


@contextlib.contextmanager
def synchronized_batch_norm(model, group):
    """Inside the block, BatchNorm layers use global-batch statistics.

    Each `keras.layers.BatchNormalization` of `model` gets an instance-level
    `_moments` that all-reduces (differentiably: the backward sums the gradients) the
    local means and squared means; the layers are restored on exit.

    Example:
        with synchronized_batch_norm(model, group):
            ...  # train
    """
    layers = [
        layer
        for layer in _keras_compat.all_sublayers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not group.is_multi or not layers:
        yield
        return
    for layer in layers:
        _keras_compat.replace_moments(layer, _synchronized_moments(layer, group))
    try:
        yield
    finally:
        for layer in layers:
            _keras_compat.restore_moments(layer)


# === The loop ===


def _train_step(model, network, x, y, group):
    import torch

    y_pred = network(x, training=True)
    model.zero_grad()
    loss = _keras_compat.compute_loss(model, x, y, y_pred, training=True)
    model.optimizer.scale_loss(loss).backward()
    weights = model.trainable_weights[:]
    with torch.no_grad():
        model.optimizer.apply([v.value.grad for v in weights], weights)
    _keras_compat.loss_tracker(model).update_state(
        _all_reduce_mean(loss, group), sample_weight=x.shape[0]
    )
    return model.compute_metrics(x, y, y_pred, sample_weight=None)


def _test_step(model, x, y):
    import torch

    with torch.no_grad():
        y_pred = model(x, training=False)
        loss = _keras_compat.compute_loss(model, x, y, y_pred, training=False)
        _keras_compat.loss_tracker(model).update_state(loss, sample_weight=x.shape[0])
        return model.compute_metrics(x, y, y_pred, sample_weight=None)


def _evaluate(model, val_ds, callbacks, group):
    model.eval()
    callbacks.on_test_begin()
    model.reset_metrics()
    for step, batch in enumerate(val_ds.as_numpy_iterator()):
        callbacks.on_test_batch_begin(step)
        logs = _test_step(model, *_to_tensors(batch))
        callbacks.on_test_batch_end(step, _floats(logs))
    sum_metric_states(model, group)
    logs = _floats(model.get_metrics_result())
    callbacks.on_test_end(logs)
    return logs


def fit(
    model,
    train_ds,
    val_ds,
    epochs,
    steps_per_epoch,
    callbacks,
    group,
    initial_epoch=0,
    verbose="auto",
    sync_batch_norm=True,
):
    """Trains a compiled Keras model (PyTorch backend) with DistributedDataParallel.

    Calls the callbacks like `Model.fit`: `on_train_begin`, per epoch
    `on_epoch_begin`, per step `on_train_batch_begin/end`, the validation's
    `on_test_*`, `on_epoch_end` with the global epoch logs (`val_` prefixed),
    then `on_train_end`.

    Args:
        model: a compiled Keras model (PyTorch backend).
        train_ds: this process's endless training `tf.data.Dataset` of
            `(images, one-hot labels)` local batches.
        val_ds: this process's validation shard, or None.
        epochs: last epoch (exclusive), as in `fit`.
        steps_per_epoch: optimizer steps per epoch.
        callbacks: a list of Keras callbacks.
        group: the `multiprocess.ProcessGroup` (its process group formed).
        initial_epoch: the first epoch to run (a resumed run), as in `fit`.
        verbose: progress bar on process 0 (`"auto"`, 0, 1 or 2).
        sync_batch_norm: global-batch BatchNorm statistics.

    Returns:
        The `keras.callbacks.History` dict of the epochs run.

    Example:
        history = fit(model, train_ds, val_ds, 3, 10, callbacks, group)
    """
    import torch

    if verbose == "auto":
        verbose = 1
    # Like fit: one iterator to build the metrics, a fresh one to train (a
    # seeded `shuffle(reshuffle_each_iteration=True)` draws its order per
    # iterator, so this keeps the batches of `fit`).
    _keras_compat.symbolic_build(model, _to_tensors(next(train_ds.as_numpy_iterator())))
    iterator = train_ds.as_numpy_iterator()
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    network = model
    if group.is_multi:
        device_ids = [torch.cuda.current_device()] if torch.cuda.is_available() else None
        network = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0 and group.is_chief,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
        model=model,
    )
    model.stop_training = False
    epoch_logs = {}
    callback_list.on_train_begin()
    with synchronized_batch_norm(model, group if sync_batch_norm else multiprocess.ProcessGroup()):
        for epoch in range(initial_epoch, epochs):
            model.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            model.train()
            for step in range(steps_per_epoch):
                batch = _to_tensors(next(iterator))
                callback_list.on_train_batch_begin(step)
                logs = _train_step(model, network, *batch, group)
                callback_list.on_train_batch_end(step, _floats(logs))
                if model.stop_training:
                    break
            sum_metric_states(model, group)
            epoch_logs = _floats(model.get_metrics_result())
            if val_ds is not None:
                val_logs = _evaluate(model, val_ds, callback_list, group)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
    model.eval()
    if epochs > 0:
        model.optimizer.finalize_variable_values(model.trainable_weights)
    callback_list.on_train_end(logs=epoch_logs)
    return model.history.history
