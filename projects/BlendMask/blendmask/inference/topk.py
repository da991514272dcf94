"""Top-k that keeps ties at the cut, in a form that tracing and ONNX export record as graph ops."""

import torch


def top_k_with_ties(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (in their original order) of the scores >= the k-th largest score.

    All of them when there are at most ``k`` scores or ``k <= 0``; ties at the cut may keep more
    than ``k``. The k-th value is read from a ``topk`` over the scores padded with ``k`` entries
    below any score, so no Python number depends on the data.
    """
    if k <= 0:
        return torch.nonzero(torch.ones_like(scores, dtype=torch.bool)).squeeze(1)
    lowest = torch.finfo(scores.dtype).min
    padded = torch.cat([scores, scores.new_full((k,), lowest)])
    kth = padded.topk(k).values[-1]
    return torch.nonzero(scores >= kth).squeeze(1)
