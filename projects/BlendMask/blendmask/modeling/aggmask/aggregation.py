"""AggMask*'s aggregation: for each selected category cell, a tiny network whose weights the cell
predicts itself turns its neighbours' mask logits and the context into one mask logit map.

- :class:`AggregationWeightHead` (``weight_head``): per level, the feature with coordinates at the
  category grid -> conv tower (3x3 conv, GN, ReLU) -> ``weight_pred`` (a conv, K outputs): the
  cell's network parameters. No activation (AggMask* has none; the SOLO-based AggMask uses tanh).
- :class:`CellFCN`: the network's shape and the layout of its K parameters. Its input is the nb
  neighbour logit maps (raw, not sigmoided) then the Cc context channels; layers are kxk convs
  with zero padding, ReLU between them, none after the last (one output: the aggregated logit).
  The parameter vector holds, layer by layer, the weight (out, in, k, k) row-major then the bias.
- :func:`aggregated_logits`: a set of cells of one image -> (P, Hf, Wf). The neighbours' logits
  are computed once per distinct mask cell; all cells run as grouped convolutions.
"""

from dataclasses import dataclass
from typing import List, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ..solov2.heads import conv_norm_relu_tower
from ..solov2.losses import dynamic_masks
from .neighbours import NUM_NEIGHBOURS


@dataclass(frozen=True)
class CellFCN:
    num_neighbours: int
    context_channels: int = 16
    channels: int = 4
    num_layers: int = 3
    kernel_size: int = 3

    def __post_init__(self):
        if self.num_layers < 1 or self.channels < 1 or self.kernel_size % 2 == 0 or self.num_neighbours < 1:
            raise ValueError(f"invalid per-cell network {self}: needs >= 1 layer and channel, an odd kernel size")

    @property
    def in_channels(self) -> int:
        return self.num_neighbours + self.context_channels

    def layer_shapes(self) -> List[Tuple[int, int]]:
        """(in, out) channels of each layer."""
        widths = [self.in_channels] + [self.channels] * (self.num_layers - 1) + [1]
        return list(zip(widths[:-1], widths[1:]))

    @property
    def num_params(self) -> int:
        k2 = self.kernel_size ** 2
        return sum(o * i * k2 + o for i, o in self.layer_shapes())

    def identity_params(self, mode: str, spare_scale: float = 0.1, generator: torch.Generator = None) -> torch.Tensor:
        """(K,) parameters of a network that passes its cell's own mask logit through: the centre
        neighbour for "cross", the mean of the four for "corner" (the context is ignored). The
        first layer writes that logit as two channels, ReLU(x) and ReLU(-x), later layers carry them
        and the last takes their difference, so no unit is dead wherever x is not zero. The other
        channels get He-initialised weights scaled by ``spare_scale`` (small, not symmetric)."""
        if self.num_layers > 1 and self.channels < 2:
            raise ValueError(f"an identity start needs >= 2 channels per hidden layer, {self} has {self.channels}")
        if mode not in NUM_NEIGHBOURS:
            raise ValueError(f"neighbour mode must be one of {sorted(NUM_NEIGHBOURS)}, got {mode!r}")
        k = self.kernel_size
        c = k // 2  # the centre tap
        taps = {"cross": {2: 1.0}, "corner": {j: 0.25 for j in range(4)}}[mode]
        if self.num_neighbours != NUM_NEIGHBOURS[mode]:
            raise ValueError(f"{mode} neighbours are {NUM_NEIGHBOURS[mode]}, this network reads {self.num_neighbours}")
        out = []
        last = len(self.layer_shapes()) - 1
        for layer, (i, o) in enumerate(self.layer_shapes()):
            std = spare_scale * (2.0 / (i * k * k)) ** 0.5
            w = torch.randn(o, i, k, k, generator=generator) * std
            if layer == 0:
                signs = (1.0,) if last == 0 else (1.0, -1.0)
                for row, sign in enumerate(signs):
                    w[row, :, :, :] = 0
                    for j, v in taps.items():
                        w[row, j, c, c] = sign * v
            else:
                w[:, :2] = 0
                if layer < last:
                    w[0, 0, c, c], w[1, 1, c, c] = 1.0, 1.0
                    w[:2, 2:] = 0
                else:
                    w[0, 0, c, c], w[0, 1, c, c] = 1.0, -1.0
            out += [w.flatten(), torch.zeros(o)]
        return torch.cat(out)

    def split(self, params: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """(P, K) -> per layer (weight (P, out, in, k, k), bias (P, out))."""
        if params.shape[-1] != self.num_params:
            raise ValueError(f"expected {self.num_params} parameters per cell, got {params.shape[-1]}")
        k = self.kernel_size
        out, start = [], 0
        for i, o in self.layer_shapes():
            w = params[:, start:start + o * i * k * k].reshape(-1, o, i, k, k)
            start += o * i * k * k
            out.append((w, params[:, start:start + o]))
            start += o
        return out

    def __call__(self, neighbour_logits: torch.Tensor, context: torch.Tensor, params: torch.Tensor,
                 hidden: List[torch.Tensor] = None) -> torch.Tensor:
        """``neighbour_logits`` (P, nb, H, W), ``context`` (Cc, H, W) of the same image, ``params``
        (P, K) -> (P, H, W) aggregated logits. ``hidden``: a list that receives each hidden layer's
        output after its ReLU, (P, channels, H, W).

        The first layer runs as two parts that add up: the neighbours' part per cell, the
        context's part with every cell's filters at once (the context is shared, so it is never
        copied per cell). Eager PyTorch runs the per-cell convolutions as one grouped convolution;
        a trace (TorchScript, ONNX), where the number of groups would freeze, runs them as
        im2col and batched matrix products instead (the same sums, other rounding; more memory)."""
        nb = neighbour_logits.shape[1]
        if nb != self.num_neighbours or context.shape[0] != self.context_channels:
            raise ValueError(f"expected {self.num_neighbours} neighbour maps and {self.context_channels} context "
                             f"channels, got {nb} and {context.shape[0]}")
        conv = _cell_conv_traceable if torch.jit.is_tracing() else _cell_conv
        k = self.kernel_size
        layers = self.split(params)
        w0, b0 = layers[0]
        o0 = self.layer_shapes()[0][1]
        x = conv(neighbour_logits, w0[:, :, :nb], b0, nb, o0, k)
        if self.context_channels:
            x = x + _shared_input_conv(context, w0[:, :, nb:], self.context_channels, o0, k)
        for (i, o), (w_l, b_l) in zip(self.layer_shapes()[1:], layers[1:]):
            x = F.relu(x)
            if hidden is not None:
                hidden.append(x)
            x = conv(x, w_l, b_l, i, o, k)
        return x[:, 0]


def _cell_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, i: int, o: int, k: int) -> torch.Tensor:
    """Per cell p: conv2d(x[p], weight[p], bias[p]), zero padding keeping the size; x (P, I, H, W),
    weight (P, O, I, k, k), bias (P, O) -> (P, O, H, W). One grouped convolution."""
    p, _, h, w = x.shape
    x = _batch_of_one(x.reshape(1, p * i, h, w))
    weight = weight.reshape(p * o, i, k, k)
    if x.is_contiguous(memory_format=torch.channels_last):
        weight = weight.contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, weight, bias.reshape(-1), padding=k // 2, groups=p)
    return y.reshape(p, o, h, w)


def _batch_of_one(x: torch.Tensor) -> torch.Tensor:
    """A channels-last (1, C, H, W) view made by reshaping keeps an arbitrary batch stride, which
    makes the convolution copy it to another layout; give it the canonical one (no copy)."""
    if x.is_contiguous(memory_format=torch.channels_last) and x.stride(0) != x.numel():
        x = x.as_strided(x.shape, (x.numel(), 1, x.shape[3] * x.shape[1], x.shape[1]))
    return x


def _cell_conv_traceable(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, i: int, o: int,
                         k: int) -> torch.Tensor:
    """:func:`_cell_conv` without a data-dependent number of groups: im2col, then a batched
    matrix product."""
    cols = F.unfold(x, k, padding=k // 2)  # (P, I*k*k, H*W)
    y = torch.bmm(weight.reshape(-1, o, i * k * k), cols) + bias[:, :, None]
    return y.reshape(-1, o, x.shape[-2], x.shape[-1])


def _shared_input_conv(x: torch.Tensor, weight: torch.Tensor, i: int, o: int, k: int) -> torch.Tensor:
    """Every cell's filters on one shared input: x (I, H, W), weight (P, O, I, k, k) -> (P, O, H, W)
    (no bias)."""
    if torch.jit.is_tracing():  # ONNX wants convolution kernels of a known shape: im2col, matrix product
        y = weight.reshape(-1, i * k * k) @ F.unfold(x[None], k, padding=k // 2)[0]
    else:  # channels-last like the per-cell inputs, so that the two parts add up without a copy
        y = F.conv2d(x[None].contiguous(memory_format=torch.channels_last),
                     weight.reshape(-1, i, k, k).contiguous(memory_format=torch.channels_last), padding=k // 2)
    return y.reshape(-1, o, x.shape[-2], x.shape[-1])


# weight_pred's weight std under the identity start: a tower output of ~1 per channel then moves each
# predicted parameter by ~IDENTITY_PRED_STD * sqrt(channels), small beside the carried logit's 1
IDENTITY_PRED_STD = 0.001


class AggregationWeightHead(nn.Module):
    """``weight_head``: per level (N, C+2, S, S) -> (N, K, S, S), the per-cell network parameters."""

    def __init__(self, in_channels: int, channels: int, num_params: int, num_convs: int = 4, norm: str = "GN",
                 pred_kernel_size: int = 1, activation: str = "none", init: str = "default",
                 identity_params: torch.Tensor = None):
        super().__init__()
        if init not in ("default", "identity"):
            raise ValueError(f"MODEL.AGGMASK.WEIGHT_PRED_INIT must be 'default' or 'identity', got {init!r}")
        if init == "identity" and (identity_params is None or identity_params.numel() != num_params):
            raise ValueError("an identity start needs the per-cell network's identity parameters "
                             f"({num_params} values)")
        if activation not in ("none", "tanh"):
            raise ValueError(f"MODEL.AGGMASK.WEIGHT_ACTIVATION must be 'none' or 'tanh', got {activation!r}")
        if pred_kernel_size not in (1, 3):
            raise ValueError(f"MODEL.AGGMASK.WEIGHT_PRED_KERNEL_SIZE must be 1 or 3, got {pred_kernel_size}")
        self.activation = activation
        self.tower = conv_norm_relu_tower(in_channels, channels, num_convs, norm)
        for module in self.tower.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)
        self.weight_pred = nn.Conv2d(channels, num_params, pred_kernel_size, padding=pred_kernel_size // 2)
        # "default": PyTorch's initialisation, as the authors'. "identity": every cell's network
        # starts as the same pass-through of its own logit (the bias) plus a small cell-specific part
        if init == "identity":
            nn.init.normal_(self.weight_pred.weight, std=IDENTITY_PRED_STD)
            with torch.no_grad():
                self.weight_pred.bias.copy_(identity_params)

    def forward(self, grid_inputs: List[torch.Tensor]) -> List[torch.Tensor]:
        out = []
        for x in grid_inputs:
            y = self.weight_pred(self.tower(x))
            out.append(torch.tanh(y) if self.activation == "tanh" else y)
        return out


def aggregated_logits(fcn: CellFCN, mask_feat: torch.Tensor, context: torch.Tensor, kernel_grid: torch.Tensor,
                      weight_grid: torch.Tensor, neighbours: torch.Tensor, cells: torch.Tensor,
                      hidden: List[torch.Tensor] = None) -> torch.Tensor:
    """One image: ``mask_feat`` (E, Hf, Wf), ``context`` (Cc, Hf, Wf), ``kernel_grid`` (Gm, E) the
    kernels of every mask cell, ``weight_grid`` (Gc, K) the parameters of every category cell,
    ``neighbours`` (Gc, nb) rows of ``kernel_grid``, ``cells`` (P,) category cells -> (P, Hf, Wf).

    Trace-safe, P may be 0: a leading dummy cell (cell 0) keeps every convolution non-empty."""
    cells = torch.cat([cells.new_zeros(1), cells])
    wanted = neighbours[cells]  # (P+1, nb)
    needed = torch.zeros(kernel_grid.shape[0], dtype=torch.int64, device=cells.device)
    needed = needed.scatter(0, wanted.flatten(), torch.ones_like(wanted.flatten()))
    rows = torch.nonzero(needed).squeeze(1)
    row_of = torch.cumsum(needed, 0) - 1
    if torch.jit.is_tracing():
        logits = dynamic_masks(mask_feat, kernel_grid[rows])  # (U, Hf, Wf): each distinct mask cell once
        x = logits[row_of[wanted]]  # (P+1, nb, Hf, Wf)
    else:
        # eager: the same logits computed as one matrix product into channels-last memory
        # (Hf, Wf, P+1, nb), on which the per-cell grouped convolutions run about twice as fast
        # on CPU; their outputs stay channels-last
        e, hf, wf = mask_feat.shape
        logits = mask_feat.reshape(e, hf * wf).t() @ kernel_grid[rows].t()  # (Hf*Wf, U)
        x = torch.index_select(logits, 1, row_of[wanted].flatten())  # (Hf*Wf, (P+1)*nb)
        x = x.reshape(hf, wf, wanted.shape[0], wanted.shape[1]).permute(2, 3, 0, 1)
    out = fcn(x, context, weight_grid[cells], hidden=hidden)
    if hidden is not None:
        hidden[:] = [h[1:] for h in hidden]
    return out[1:].contiguous()


__all__ = ["AggregationWeightHead", "CellFCN", "aggregated_logits"]
