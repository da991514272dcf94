"""AggMask* (Wang et al. 2021: locally aggregated mask representations, on SOLOv2)."""

from .aggregation import AggregationWeightHead, CellFCN, aggregated_logits
from .context import AggMaskContextHead
from .convert import AUTHORS_TO_OURS, convert_authors_state_dict
from .meta_arch import AggMask
from .neighbours import NEIGHBOUR_MODES, NUM_NEIGHBOURS, global_neighbour_index, neighbour_table, resolve_mode

__all__ = [
    "AUTHORS_TO_OURS",
    "AggMask",
    "AggMaskContextHead",
    "AggregationWeightHead",
    "CellFCN",
    "NEIGHBOUR_MODES",
    "NUM_NEIGHBOURS",
    "aggregated_logits",
    "convert_authors_state_dict",
    "global_neighbour_index",
    "neighbour_table",
    "resolve_mode",
]
