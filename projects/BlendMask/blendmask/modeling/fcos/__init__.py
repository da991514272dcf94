from .fcos import FCOS
from .head import FCOSHead
from .outputs import FCOSOutput, Positives

__all__ = ["FCOS", "FCOSHead", "FCOSOutput", "Positives"]
