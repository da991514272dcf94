"""SOLOv2's unified mask feature: P2..P5 brought to P2's resolution, summed, projected to E channels."""

from typing import List, Optional

import torch
from torch import nn

from .coords import append_coords
from .heads import check_norm


def _conv_norm_relu(in_channels: int, channels: int, kernel_size: int, norm: str, bias: bool = True) -> nn.Sequential:
    """conv (with a bias only without a norm, and only when ``bias``), GN when ``norm`` is "GN", ReLU."""
    use_gn = norm == "GN"
    layers = [nn.Conv2d(in_channels, channels, kernel_size, padding=kernel_size // 2, bias=bias and not use_gn)]
    if use_gn:
        layers.append(nn.GroupNorm(32, channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SOLOv2MaskHead(nn.Module):
    """``mask_head``: level i (P2+i) runs max(i, 1) x (3x3 conv, GN, ReLU), each conv but level 0's
    followed by a 2x bilinear upsampling, so every level ends at P2's resolution; the coarsest
    level gets coordinate channels first. The sum goes through ``conv_pred`` (1x1 conv, GN,
    ReLU) to the E-channel mask feature at 1/4 of the padded input.

    ``tower_norm`` (default: ``norm``) and ``tower_bias`` set the 3x3 convs of the levels apart from
    ``conv_pred``: the AggMask* authors' have neither a norm nor a bias (``"none"``, False)."""

    def __init__(self, in_channels: int, channels: int, num_masks: int, num_levels: int = 4, norm: str = "GN",
                 tower_norm: Optional[str] = None, tower_bias: bool = True):
        super().__init__()
        norm = check_norm(norm)
        tower_norm = norm if tower_norm is None else check_norm(tower_norm)
        self.convs_all_levels = nn.ModuleList()
        for level in range(num_levels):
            tower = nn.Sequential()
            for j in range(max(level, 1)):
                width_in = in_channels if j == 0 else channels
                if j == 0 and level == num_levels - 1 and level > 0:
                    width_in += 2  # coordinates on the coarsest level
                tower.add_module(f"conv{j}", _conv_norm_relu(width_in, channels, 3, tower_norm, tower_bias))
                if level > 0:
                    tower.add_module(f"upsample{j}", nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.convs_all_levels.append(tower)
        self.conv_pred = _conv_norm_relu(channels, num_masks, 1, norm)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        last = len(self.convs_all_levels) - 1
        total = None
        for level, (x, tower) in enumerate(zip(features, self.convs_all_levels)):
            if level == last and level > 0:
                x = append_coords(x)
            y = tower(x)
            total = y if total is None else total + y
        return self.conv_pred(total)
