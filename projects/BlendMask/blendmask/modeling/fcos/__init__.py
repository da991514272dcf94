from .fcos import FCOS
from .head import FCOSHead

__all__ = ["FCOS", "FCOSHead"]
