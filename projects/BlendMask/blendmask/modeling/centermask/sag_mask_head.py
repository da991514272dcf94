"""SAG-Mask: CenterMask's spatial-attention-guided mask head."""

import fvcore.nn.weight_init as weight_init
import torch
from torch import nn
from torch.nn import functional as F


class SpatialAttention(nn.Module):
    """``x * sigmoid(conv3x3([mean over channels, max over channels]))`` (conv without bias).

    ``last_attention`` holds the latest (n, 1, H, W) attention map when ``keep_attention`` is set
    (for debugging and tests)."""

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.keep_attention = False
        self.last_attention = None

    def forward(self, x):
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        attention = self.conv(pooled).sigmoid()
        if self.keep_attention:
            self.last_attention = attention
        return x * attention


class SpatialAttentionMaskHead(nn.Module):
    """``num_conv`` conv3x3+ReLU -> spatial attention -> 2x deconv+ReLU -> 1x1 class-specific logits.

    (n, C, R, R) pooled features -> (n, num_classes or 1, 2R, 2R) mask logits.
    """

    def __init__(self, in_channels: int, conv_dim: int, num_conv: int, num_classes: int, cls_agnostic: bool = False):
        super().__init__()
        self.num_conv = num_conv
        channels = in_channels
        for i in range(num_conv):
            conv = nn.Conv2d(channels, conv_dim, 3, padding=1)
            weight_init.c2_msra_fill(conv)
            self.add_module(f"mask_fcn{i + 1}", conv)
            channels = conv_dim
        self.spatialAtt = SpatialAttention()
        self.deconv = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
        weight_init.c2_msra_fill(self.deconv)
        self.predictor = nn.Conv2d(channels, 1 if cls_agnostic else num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x):
        for i in range(self.num_conv):
            x = F.relu(getattr(self, f"mask_fcn{i + 1}")(x))
        x = self.spatialAtt(x)
        return self.predictor(F.relu(self.deconv(x)))
