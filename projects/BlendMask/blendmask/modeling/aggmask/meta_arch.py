"""The AggMask* meta-architecture: our SOLOv2 plus a context feature and, for every selected
category cell, a per-cell network that aggregates its neighbours' mask logits."""

from typing import Dict, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ..solov2.heads import SOLOv2InsHead, instance_features
from ..solov2.inference import solov2_inference_single
from ..solov2.losses import category_focal_loss, dice_loss
from ..solov2.meta_arch import SOLOv2
from .aggregation import AggregationWeightHead, CellFCN, aggregated_logits
from .context import AggMaskContextHead
from .neighbours import NUM_NEIGHBOURS, global_neighbour_index, resolve_mode


def _grid(x: torch.Tensor) -> torch.Tensor:
    """(C, S, S) -> (S*S, C)."""
    return x.permute(1, 2, 0).reshape(-1, x.shape[0])


@META_ARCH_REGISTRY.register()
class AggMask(SOLOv2):
    """AggMask* (Wang et al. 2021, on SOLOv2). SOLOv2's modules and keys (``MODEL.SOLOV2.*``), plus
    ``weight_head`` (per-cell network parameters on the category grid), ``context_head`` and the
    neighbour table (``MODEL.AGGMASK.*``). A cell's mask is its network's output on its
    neighbours' SOLOv2 mask logits and the context, in training and inference alike.

    Outputs and losses are SOLOv2's: instances with scores, pred_classes, pred_masks, pred_boxes;
    loss_ins (dice on the aggregated masks) and loss_cate."""

    num_classes_key = "MODEL.SOLOV2.NUM_CLASSES"

    @configurable
    def __init__(self, *, weight_head: AggregationWeightHead, context_head: AggMaskContextHead, fcn: CellFCN,
                 neighbour_mode: str, context_in_features: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.weight_head = weight_head
        self.context_head = context_head
        self.fcn = fcn
        self.neighbour_mode = neighbour_mode
        self.context_in_features = list(context_in_features)
        if fcn.num_neighbours != NUM_NEIGHBOURS[neighbour_mode]:
            raise ValueError(f"{neighbour_mode} neighbours are {NUM_NEIGHBOURS[neighbour_mode]}, the per-cell "
                             f"network reads {fcn.num_neighbours}")
        self.register_buffer("neighbours", global_neighbour_index(
            self.ins_head.num_grids, self.ins_head.kernel_grids, neighbour_mode), persistent=False)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        s, a = cfg.MODEL.SOLOV2, cfg.MODEL.AGGMASK
        mask_grids = list(a.MASK_GRIDS) or list(s.NUM_GRIDS)
        mode = resolve_mode(a.NEIGHBOURS, s.NUM_GRIDS, mask_grids)
        fcn = CellFCN(NUM_NEIGHBOURS[mode], a.CONTEXT_CHANNELS, a.FCN_CHANNELS, a.FCN_NUM_LAYERS, a.FCN_KERNEL_SIZE)
        ret["ins_head"] = SOLOv2InsHead(
            s.INSTANCE_IN_CHANNELS, s.INSTANCE_CHANNELS, s.NUM_CLASSES, s.NUM_KERNELS, s.NUM_GRIDS,
            num_convs=s.NUM_INSTANCE_CONVS, norm=s.NORM, prior_prob=s.PRIOR_PROB, use_coord_conv=s.USE_COORD_CONV,
            kernel_grids=mask_grids, kernel_pred_size=s.KERNEL_PRED_KERNEL_SIZE,
        )
        ret.update(
            weight_head=AggregationWeightHead(
                s.INSTANCE_IN_CHANNELS + 2, s.INSTANCE_CHANNELS, fcn.num_params, num_convs=a.NUM_WEIGHT_CONVS,
                norm=s.NORM, pred_kernel_size=a.WEIGHT_PRED_KERNEL_SIZE, activation=a.WEIGHT_ACTIVATION,
                init=a.WEIGHT_PRED_INIT,
                identity_params=fcn.identity_params(mode) if a.WEIGHT_PRED_INIT == "identity" else None,
            ),
            context_head=AggMaskContextHead(s.INSTANCE_IN_CHANNELS, len(a.CONTEXT_IN_FEATURES), a.CONTEXT_CHANNELS,
                                            norm=s.NORM),
            fcn=fcn,
            neighbour_mode=mode,
            context_in_features=a.CONTEXT_IN_FEATURES,
        )
        return ret

    def heads(self, features: Dict[str, torch.Tensor]):
        """(category logits per level (N, C, Sc, Sc), kernels per level (N, E, Sm, Sm), mask feature
        (N, E, Hf, Wf), cell-network parameters per level (N, K, Sc, Sc), context (N, Cc, Hf, Wf))."""
        cate_logits, kernels, inputs = self.ins_head(
            instance_features([features[f] for f in self.instance_in_features]), return_grid_inputs=True)
        weights = self.weight_head([x for x, _ in inputs])
        mask_feat = self.mask_head([features[f] for f in self.mask_in_features])
        context = self.context_head([features[f] for f in self.context_in_features])
        if context.shape[-2:] != mask_feat.shape[-2:]:
            raise ValueError(f"the context ({tuple(context.shape[-2:])}, from {self.context_in_features[0]}) and "
                             f"the mask feature ({tuple(mask_feat.shape[-2:])}) must have one size")
        return cate_logits, kernels, mask_feat, weights, context

    def image_grids(self, outputs, i: int):
        """Image ``i``'s (mask feature, context, kernel grid (Gm, E), weight grid (Gc, K))."""
        _, kernels, mask_feat, weights, context = outputs
        return (mask_feat[i], context[i], torch.cat([_grid(k[i]) for k in kernels]),
                torch.cat([_grid(w[i]) for w in weights]))

    def cell_logits(self, outputs, i: int, cells: torch.Tensor, hidden=None) -> torch.Tensor:
        """Aggregated mask logits (P, Hf, Wf) of category ``cells`` (level-major flat indices) of image ``i``."""
        mask_feat, context, kernel_grid, weight_grid = self.image_grids(outputs, i)
        return aggregated_logits(self.fcn, mask_feat, context, kernel_grid, weight_grid, self.neighbours, cells,
                                 hidden=hidden)

    def detect_single(self, outputs, i: int, record=None) -> Dict[str, torch.Tensor]:
        cate_logits, kernels, mask_feat = outputs[:3]
        return solov2_inference_single([x[i] for x in cate_logits], [k[i] for k in kernels], mask_feat[i],
                                       self.instance_strides, self.test_params, record=record,
                                       mask_logits=lambda cells: self.cell_logits(outputs, i, cells))

    def head_losses(self, outputs, targets) -> Dict[str, torch.Tensor]:
        """loss_ins: dice_weight x mean dice of the aggregated masks of all positive cells;
        loss_cate: SOLOv2's focal loss."""
        cate_logits = outputs[0]
        offsets = [0]
        for g in self.ins_head.num_grids[:-1]:
            offsets.append(offsets[-1] + g * g)
        dice, num_pos = [], 0
        for i, image_targets in enumerate(targets):
            num_pos += sum(int(t.ins_ind_label.sum()) for t in image_targets)
            cells = [t.grid_order + off for t, off in zip(image_targets, offsets)]
            masks = [t.ins_label for t in image_targets]
            cells = torch.cat(cells)
            if len(cells) == 0:
                continue
            probs = torch.sigmoid(self.cell_logits(outputs, i, cells))
            dice.append(dice_loss(probs, torch.cat(masks)))
        w = self.loss_weights
        if dice:
            loss_ins = torch.cat(dice).mean() * w.get("dice_weight", 3.0)
        else:  # no positive sample: a zero that keeps every head in the graph
            loss_ins = sum(x.sum() for level in outputs[1:4:2] for x in level) * 0 + outputs[2].sum() * 0
            loss_ins = loss_ins + outputs[4].sum() * 0
        loss_cate = category_focal_loss(cate_logits, targets, self.num_classes, num_pos,
                                        w.get("focal_alpha", 0.25), w.get("focal_gamma", 2.0))
        return {"loss_ins": loss_ins, "loss_cate": w.get("focal_weight", 1.0) * loss_cate}
