"""BlendMask: attention, basis module, blender and the meta-architecture."""

from .attention import AttentionConv
from .basis_module import BASIS_MODULE_REGISTRY, build_basis_module
from .blender import Blender, blend
from .meta_arch import BlendMask
from .protonet import ProtoNet
from .semantic_targets import semantic_targets_from_instances

__all__ = [
    "AttentionConv",
    "BASIS_MODULE_REGISTRY",
    "Blender",
    "BlendMask",
    "ProtoNet",
    "blend",
    "build_basis_module",
    "semantic_targets_from_instances",
]
