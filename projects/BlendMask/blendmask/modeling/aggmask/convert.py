"""The AggMask* authors' head parameter names (``AggMaskStarHead.state_dict()``) -> ours.

| theirs | ours |
|---|---|
| ``feature_convs.{i}.conv{j}.conv.weight`` | ``mask_head.convs_all_levels.{i}.conv{j}.0.weight`` |
| ``solo_mask.conv.weight``, ``solo_mask.gn.*`` | ``mask_head.conv_pred.0.weight``, ``mask_head.conv_pred.1.*`` |
| ``cate_convs.{k}.conv.weight``, ``.gn.*`` | ``ins_head.cate_tower.{3k}.weight``, ``ins_head.cate_tower.{3k+1}.*`` |
| ``kernel_convs.{k}.conv.weight``, ``.gn.*`` | ``ins_head.kernel_tower.{3k}.weight``, ``.{3k+1}.*`` |
| ``solo_cate.*`` / ``solo_kernel.*`` | ``ins_head.cate_pred.*`` / ``ins_head.kernel_pred.*`` |
| ``kernel_convs_convcomb.{k}.conv.weight``, ``.gn.*`` | ``weight_head.tower.{3k}.weight``, ``.{3k+1}.*`` |
| ``learned_weights.*`` | ``weight_head.weight_pred.*`` |
| ``context_fusion_convs.0.*`` / ``.1.*`` / ``.3.*`` | ``context_head.reduce.*`` / ``.norm.*`` / ``.out.*`` |

The towers hold (conv, GN, ReLU) per layer, so their k-th conv is entry 3k. The values need no
change: the same layouts (the per-cell parameter vector included). Our config must match theirs:
configs/AggMask (MODEL.SOLOV2.MASK_TOWER_NORM "none", MASK_TOWER_BIAS False,
KERNEL_PRED_KERNEL_SIZE 1, ...). Backbone and FPN parameters are not part of the head.
"""

import re
from typing import Dict, Mapping

import torch

# (pattern of their name, function of the match -> our name)
AUTHORS_TO_OURS = (
    (r"feature_convs\.(\d+)\.conv(\d+)\.conv\.weight",
     lambda m: f"mask_head.convs_all_levels.{m[1]}.conv{m[2]}.0.weight"),
    (r"solo_mask\.conv\.weight", lambda m: "mask_head.conv_pred.0.weight"),
    (r"solo_mask\.gn\.(weight|bias)", lambda m: f"mask_head.conv_pred.1.{m[1]}"),
    (r"cate_convs\.(\d+)\.conv\.weight", lambda m: f"ins_head.cate_tower.{3 * int(m[1])}.weight"),
    (r"cate_convs\.(\d+)\.gn\.(weight|bias)", lambda m: f"ins_head.cate_tower.{3 * int(m[1]) + 1}.{m[2]}"),
    (r"kernel_convs\.(\d+)\.conv\.weight", lambda m: f"ins_head.kernel_tower.{3 * int(m[1])}.weight"),
    (r"kernel_convs\.(\d+)\.gn\.(weight|bias)", lambda m: f"ins_head.kernel_tower.{3 * int(m[1]) + 1}.{m[2]}"),
    (r"solo_cate\.(weight|bias)", lambda m: f"ins_head.cate_pred.{m[1]}"),
    (r"solo_kernel\.(weight|bias)", lambda m: f"ins_head.kernel_pred.{m[1]}"),
    (r"kernel_convs_convcomb\.(\d+)\.conv\.weight", lambda m: f"weight_head.tower.{3 * int(m[1])}.weight"),
    (r"kernel_convs_convcomb\.(\d+)\.gn\.(weight|bias)", lambda m: f"weight_head.tower.{3 * int(m[1]) + 1}.{m[2]}"),
    (r"learned_weights\.(weight|bias)", lambda m: f"weight_head.weight_pred.{m[1]}"),
    (r"context_fusion_convs\.0\.(weight|bias)", lambda m: f"context_head.reduce.{m[1]}"),
    (r"context_fusion_convs\.1\.(weight|bias)", lambda m: f"context_head.norm.{m[1]}"),
    (r"context_fusion_convs\.3\.(weight|bias)", lambda m: f"context_head.out.{m[1]}"),
)


def our_name(their_name: str) -> str:
    """Our parameter name for one of the authors' head names; KeyError for a name not in the table."""
    for pattern, rename in AUTHORS_TO_OURS:
        m = re.fullmatch(pattern, their_name)
        if m:
            return rename(m)
    raise KeyError(f"{their_name!r} is not a parameter of the AggMask* head (no mapping)")


def convert_authors_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> Dict[str, torch.Tensor]:
    """The authors' head state_dict (names as ``AggMaskStarHead``'s, optionally under ``prefix``,
    e.g. "bbox_head.") -> ours, for ``AggMask.load_state_dict(..., strict=False)`` (the backbone
    is not in it). Names outside ``prefix`` are left out; unknown head names raise KeyError."""
    out = {}
    for name, value in state_dict.items():
        if not name.startswith(prefix):
            continue
        out[our_name(name[len(prefix):])] = value
    return out


__all__ = ["AUTHORS_TO_OURS", "convert_authors_state_dict", "our_name"]
