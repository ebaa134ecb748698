"""Plain-PyTorch BA-ResNet: the yardstick for keras_ba under the PyTorch backend.

The same network as `keras_ba.applications.BAResNet50(attention="bav1")`,
written directly in PyTorch in the authors' module layout (the state-dict keys
of `zhaoy376/Bridge-Attention` `models/BA_resnet.py`: `layer1.0.ba.pre_fusions.0.0.weight`
...), so that its `state_dict()` loads into the Keras model with
`keras_ba.convert.load_torch_weights`. Both then compute the same function and
`python -m benchmarks.speed --torch-reference` times them side by side.

It is a benchmark yardstick only: keras_ba never imports it. The SE variant
(`attention="se"`, keys `layer1.0.se.fc.{0,2}.weight`, as the authors'
`se_resnet.py`) and the plain ResNet (`attention=None`, torchvision's keys) are
here too, for the same comparison without attention.

Example:
>>> import torch
>>> from benchmarks.torch_reference import TorchBAResNet
>>> net = TorchBAResNet(depths=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_filters=8, classes=10)
>>> net.eval()(torch.zeros(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ATTENTIONS = ("bav1", "se", None)
BLOCK_TYPES = ("basic", "bottleneck")


class BAv1Attention(nn.Module):
    """BAv1 of the authors' `BA_module_resnet`: per-branch Linear + BatchNorm1d,
    summed, then ReLU, Linear, sigmoid. Takes the pooled features `(B, C_i)`,
    the last one being the recalibrated output; returns the gate `(B, C_n)`."""

    def __init__(self, pre_channels, channels, reduction):
        super().__init__()
        width = channels // reduction
        self.pre_fusions = nn.ModuleList(
            nn.Sequential(nn.Linear(c, width, bias=False), nn.BatchNorm1d(width))
            for c in pre_channels
        )
        self.cur_fusion = nn.Sequential(
            nn.Linear(channels, width, bias=False), nn.BatchNorm1d(width)
        )
        self.generation = nn.Sequential(
            nn.ReLU(inplace=True), nn.Linear(width, channels, bias=False), nn.Sigmoid()
        )

    def forward(self, pooled):
        *earlier, last = pooled
        fused = self.cur_fusion(last)
        for branch, vector in zip(self.pre_fusions, earlier, strict=True):
            fused = fused + branch(vector)
        return self.generation(fused)


class SEAttention(nn.Module):
    """The authors' bias-free SE (`se.fc` = Linear, ReLU, Linear, sigmoid) on the last feature."""

    def __init__(self, channels, reduction):
        super().__init__()
        width = channels // reduction
        self.fc = nn.Sequential(
            nn.Linear(channels, width, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(width, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, pooled):
        return self.fc(pooled[-1])


def _pool(x):
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


class Block(nn.Module):
    """A basic (two 3x3) or bottleneck (1x1, 3x3 with the stride, 1x1 x4) block.

    The attention sees the post-ReLU inner outputs and the post-BN last output,
    rescales the last one, then the shortcut is added and ReLU applied.
    """

    def __init__(self, block_type, inplanes, planes, stride, attention, reduction):
        super().__init__()
        self.bottleneck = block_type == "bottleneck"
        out = planes * 4 if self.bottleneck else planes
        if self.bottleneck:
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
            earlier = [planes, planes]
        else:
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            earlier = [planes]
        self.relu = nn.ReLU(inplace=True)
        self.attention = attention
        if attention == "bav1":
            self.ba = BAv1Attention(earlier, out, reduction)
        elif attention == "se":
            self.se = SEAttention(out, reduction)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x):
        f1 = self.relu(self.bn1(self.conv1(x)))
        if self.bottleneck:
            f2 = self.relu(self.bn2(self.conv2(f1)))
            features = [f1, f2, self.bn3(self.conv3(f2))]
        else:
            features = [f1, self.bn2(self.conv2(f1))]
        out = features[-1]
        if self.attention == "bav1":
            gate = self.ba([_pool(f) for f in features])
            out = out * gate[:, :, None, None]
        elif self.attention == "se":
            out = out * self.se([_pool(out)])[:, :, None, None]
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class TorchBAResNet(nn.Module):
    """BA-ResNet (v1.5, ImageNet stem) in plain PyTorch, with the authors' keys.

    Args:
        depths: blocks per stage; `(3, 4, 6, 3)` is ResNet-50.
        widths: base width per stage (a bottleneck outputs 4x).
        block_type: `"bottleneck"` or `"basic"`.
        stem_filters: filters of the 7x7/2 stem conv.
        classes: classifier outputs (logits, no softmax).
        attention: `"bav1"`, `"se"` or None.
        reduction: attention reduction ratio.

    Example:
    >>> net = TorchBAResNet()  # BA-ResNet-50, 1000 classes
    >>> sum(p.numel() for p in net.parameters())
    28706376
    """

    def __init__(
        self,
        depths=(3, 4, 6, 3),
        widths=(64, 128, 256, 512),
        block_type="bottleneck",
        stem_filters=64,
        classes=1000,
        attention="bav1",
        reduction=16,
    ):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if block_type not in BLOCK_TYPES:
            raise ValueError(f"block_type must be one of {BLOCK_TYPES}, got {block_type!r}")
        if len(depths) != len(widths):
            raise ValueError(f"depths and widths differ in length: {depths} vs {widths}")
        self.conv1 = nn.Conv2d(3, stem_filters, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_filters)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = stem_filters
        for stage, (depth, planes) in enumerate(zip(depths, widths, strict=True), start=1):
            blocks = []
            for index in range(depth):
                stride = 2 if stage > 1 and index == 0 else 1
                blocks.append(Block(block_type, inplanes, planes, stride, attention, reduction))
                inplanes = planes * 4 if block_type == "bottleneck" else planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.num_stages = len(depths)
        self.fc = nn.Linear(inplanes, classes)
        for module in self.modules():  # the authors' (torchvision's) initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(_pool(x))


def calibrate_batchnorm(net, images, perturb=0.0, seed=0):
    """Sets every BatchNorm's running statistics from one batch (training mode).

    A freshly initialised network has running mean 0 and variance 1, so in
    eval mode its BatchNorms are (nearly) identities and the activations of a
    deep network grow large; statistics from real activations keep eval-mode
    logits in a sane range, which makes a logits comparison meaningful.
    `perturb` > 0 then moves mean and variance off the batch values
    (`mean + perturb * N(0, 1)`, `var * U(1 - perturb, 1 + perturb)`), so an
    implementation that used batch statistics in eval mode would not match.

    Args:
        net: a `torch.nn.Module`; returned in eval mode.
        images: an NCHW float tensor.
        perturb: relative size of the perturbation (0 for none).
        seed: seed of the perturbation.

    Returns:
        `net`.

    Example:
    >>> net = calibrate_batchnorm(TorchBAResNet(depths=(1, 1), widths=(8, 8), stem_filters=8),
    ...                           torch.randn(4, 3, 32, 32))
    >>> bool(net.bn1.running_var.min() > 0), net.training
    (True, False)
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # cumulative average: one batch sets the statistics
    net.train()
    with torch.no_grad():
        net(images)
    for module, momentum in zip(norms, momenta, strict=True):
        module.momentum = momentum
    if perturb:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in norms:
                mean, var = module.running_mean, module.running_var
                mean += perturb * torch.randn(mean.shape, generator=generator).to(mean)
                var *= 1 + perturb * (2 * torch.rand(var.shape, generator=generator).to(var) - 1)
    return net.eval()


def numpy_state_dict(net):
    """`net.state_dict()` as `{key: numpy array}` (the authors' key names).

    Example:
    >>> state = numpy_state_dict(TorchBAResNet(depths=(1,), widths=(8,), stem_filters=8))
    >>> state["layer1.0.ba.cur_fusion.0.weight"].shape
    (2, 32)
    """
    return {key: value.detach().cpu().numpy() for key, value in net.state_dict().items()}


class TorchRunner:
    """Times one train step and one inference batch of a plain PyTorch network.

    The train step mirrors what Keras' `train_on_batch` does under the PyTorch
    backend: training mode, SGD with momentum, cross-entropy on logits,
    backward, update, and the loss fetched to the host (which synchronises).
    Inference: eval mode, `torch.no_grad()`, logits copied to the host (as
    `predict_on_batch` returns NumPy).

    Args:
        net: the network.
        images: NHWC NumPy batch (transposed to NCHW once here).
        labels: integer NumPy labels.
        memory_format: `"channels_first"` (contiguous NCHW, PyTorch's default)
            or `"channels_last"` (`torch.channels_last` memory format).
        precision: `"float32"`, `"bfloat16"` or `"float16"` (autocast).
        learning_rate: SGD learning rate (momentum 0.9).
        device: a torch device; default CUDA when available.

    Example:
    >>> net = TorchBAResNet(depths=(1,), widths=(8,), stem_filters=8, classes=3)
    >>> runner = TorchRunner(net, np.zeros((2, 32, 32, 3), "float32"), np.array([0, 1]))
    >>> bool(np.isfinite(runner.train_step()))
    True
    """

    def __init__(
        self,
        net,
        images,
        labels,
        memory_format="channels_first",
        precision="float32",
        learning_rate=1e-3,
        device=None,
    ):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        layout = (
            torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
        )
        self.net = net.to(self.device, memory_format=layout)
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        self.images = self.images.to(self.device).contiguous(memory_format=layout)
        self.labels = torch.from_numpy(np.asarray(labels, dtype="int64")).to(self.device)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=learning_rate, momentum=0.9)
        self.autocast_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "float16" else None

    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        )

    def train_step(self):
        """One optimizer step; returns the loss as a Python float."""
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = F.cross_entropy(self.net(self.images).float(), self.labels)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss.item()

    def predict(self):
        """Eval-mode logits of the batch, as a float32 NumPy array."""
        self.net.eval()
        with torch.no_grad(), self._autocast():
            return self.net(self.images).float().cpu().numpy()
