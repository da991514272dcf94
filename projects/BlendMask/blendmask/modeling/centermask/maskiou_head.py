"""MaskIoU head (Mask Scoring R-CNN, as CenterMask uses it): regress the IoU of a predicted mask."""

import fvcore.nn.weight_init as weight_init
import torch
from torch import nn
from torch.nn import functional as F

FC_DIM = 1024  # fixed in CenterMask


class MaskIoUHead(nn.Module):
    """Input: pooled ROI features (n, C, R, R) and the predicted class's mask probability
    (n, 1, 2R, 2R), max-pooled to R and concatenated after the features. ``num_conv`` conv3x3+ReLU
    (the last with stride 2), two fc+ReLU of width 1024 and a linear layer -> (n, num_classes).
    """

    def __init__(self, in_channels: int, conv_dim: int, num_conv: int, num_classes: int, resolution: int = 14):
        super().__init__()
        self.num_conv = num_conv
        channels = in_channels + 1
        for i in range(num_conv):
            conv = nn.Conv2d(channels, conv_dim, 3, stride=2 if i == num_conv - 1 else 1, padding=1)
            weight_init.c2_msra_fill(conv)
            self.add_module(f"maskiou_fcn{i + 1}", conv)
            channels = conv_dim
        out_res = (resolution + 1) // 2 if num_conv else resolution
        self.maskiou_fc1 = nn.Linear(channels * out_res * out_res, FC_DIM)
        self.maskiou_fc2 = nn.Linear(FC_DIM, FC_DIM)
        for fc in (self.maskiou_fc1, self.maskiou_fc2):
            weight_init.c2_xavier_fill(fc)
        self.maskiou = nn.Linear(FC_DIM, num_classes)
        nn.init.normal_(self.maskiou.weight, std=0.01)
        nn.init.zeros_(self.maskiou.bias)

    def forward(self, features: torch.Tensor, mask_probs: torch.Tensor) -> torch.Tensor:
        x = torch.cat([features, F.max_pool2d(mask_probs, kernel_size=2, stride=2)], dim=1)
        for i in range(self.num_conv):
            x = F.relu(getattr(self, f"maskiou_fcn{i + 1}")(x))
        x = F.relu(self.maskiou_fc1(x.flatten(1)))
        x = F.relu(self.maskiou_fc2(x))
        return self.maskiou(x)
