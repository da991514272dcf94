"""SOLOv2 losses: dice on the dynamic-kernel masks of the positive samples, focal on the grid."""

from typing import List

import torch
from fvcore.nn import sigmoid_focal_loss_jit
from torch.nn import functional as F

from .targets import LevelTargets


def dice_loss(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per sample 1 - 2 sum(p t) / (sum(p^2) + 0.001 + sum(t^2) + 0.001); (P, ...) -> (P,)."""
    probs = probs.reshape(probs.shape[0], -1)
    targets = targets.reshape(targets.shape[0], -1).to(probs.dtype)
    inter = torch.sum(probs * targets, 1)
    p2 = torch.sum(probs * probs, 1) + 0.001
    t2 = torch.sum(targets * targets, 1) + 0.001
    return 1 - 2 * inter / (p2 + t2)


def dynamic_masks(mask_feat: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """(E, Hf, Wf) feature, (P, E) kernels -> (P, Hf, Wf) mask logits (one 1x1 conv per kernel),
    contiguous.

    A leading zero kernel lets P be 0 (a convolution needs one output channel) without a branch
    on the data, so the traced graph serves every P.

    The batch of one is made as a view that keeps the feature's memory format: ``mask_feat[None]``
    of one image of a channels-last batch (strides (1, Wf*E, E)) gets the batch stride E, smaller
    than the others, so torch takes it for a strided NCHW tensor and the convolution first copies
    the whole feature to NCHW (0.3 s of SOLOv2's CPU inference at 800x1333). The values are the
    same either way."""
    kernels = torch.cat([kernels.new_zeros((1, kernels.shape[1])), kernels])
    batch = mask_feat.permute(1, 2, 0)[None].permute(0, 3, 1, 2)
    return F.conv2d(batch, kernels[:, :, None, None])[0, 1:].contiguous()


def solov2_losses(
    cate_logits: List[torch.Tensor], kernels: List[torch.Tensor], mask_feat: torch.Tensor,
    targets: List[List[LevelTargets]], num_classes: int, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
    focal_weight: float = 1.0, dice_weight: float = 3.0,
):
    """``cate_logits`` / ``kernels``: per level (N, C, S, S) / (N, E, S, S); ``mask_feat`` (N, E,
    Hf, Wf); ``targets[i][level]`` from :func:`solov2_targets_single`.

    loss_ins = dice_weight x mean dice over all samples; loss_cate = focal_weight x sigmoid focal
    loss summed over every cell and class, / (positive cells + 1)."""
    dice, num_pos = [], 0
    for level, level_kernels in enumerate(kernels):
        for i, image_targets in enumerate(targets):
            t = image_targets[level]
            num_pos += int(t.ins_ind_label.sum())
            if len(t.grid_order) == 0:
                continue
            sample_kernels = level_kernels[i].flatten(1)[:, t.grid_order].t()  # (P, E)
            probs = torch.sigmoid(dynamic_masks(mask_feat[i], sample_kernels))
            dice.append(dice_loss(probs, t.ins_label))
    if dice:
        loss_ins = torch.cat(dice).mean() * dice_weight
    else:  # no positive sample: a zero that keeps the graph connected
        loss_ins = mask_feat.sum() * 0 + sum(k.sum() for k in kernels) * 0

    loss_cate = category_focal_loss(cate_logits, targets, num_classes, num_pos, focal_alpha, focal_gamma)
    return {"loss_ins": loss_ins, "loss_cate": focal_weight * loss_cate}


def category_focal_loss(cate_logits: List[torch.Tensor], targets: List[List[LevelTargets]], num_classes: int,
                        num_pos: int, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss summed over every cell and class of every level and image, / (num_pos + 1)."""
    logits = torch.cat([x.permute(0, 2, 3, 1).reshape(-1, num_classes) for x in cate_logits])
    labels = torch.cat([
        torch.stack([image_targets[level].cate_label.flatten() for image_targets in targets]).flatten()
        for level in range(len(cate_logits))
    ])
    one_hot = torch.zeros_like(logits)
    fg = torch.nonzero(labels < num_classes).squeeze(1)
    one_hot[fg, labels[fg]] = 1
    loss = sigmoid_focal_loss_jit(logits, one_hot, alpha=alpha, gamma=gamma, reduction="sum")
    return loss / (num_pos + 1)
