"""What shared code (export, checkpoints, class names, demo, evaluation) asks a model, in one place.

A meta-architecture of this package declares:

- ``outputs`` (:class:`ModelOutputs`): the kind of mask it predicts and its resolution, and its
  extra per-image outputs (``mask_scores``, ``sem_seg``);
- ``num_classes_key``: the config key holding its class count (class attribute: read from the
  registered class, before a model is built, by :func:`num_classes_key_of`);
- ``class_layers``: the parameters whose first dimension is the class count (plus an offset), so a
  checkpoint trained for other classes is reported with both counts;
- ``postprocessing_spec()``: the inference settings an exported graph has baked in.

``OneStageDetector`` declares them for FCOS and every model built on it; SOLOv2 for its own. A new
model declares them too, and every tool then serves it without a change (tests/toy_model.py).
"""

from dataclasses import dataclass
from typing import Tuple

MASK_KINDS = ("none", "box", "image")


@dataclass(frozen=True)
class ModelOutputs:
    """``masks``: "none" (boxes only), "box" (``mask_probs`` (N, R, R) inside each box, R =
    ``mask_resolution``) or "image" (``mask_probs`` over the padded input at stride 4).
    ``mask_scores``: a per-detection score for ranking masks (segm AP) apart from ``scores``.
    ``sem_seg_channels``: channels of a per-image semantic output (0: none)."""

    masks: str = "none"
    mask_resolution: int = 0
    mask_scores: bool = False
    sem_seg_channels: int = 0

    def __post_init__(self):
        if self.masks not in MASK_KINDS:
            raise ValueError(f"ModelOutputs.masks must be one of {MASK_KINDS}, got {self.masks!r}")
        if (self.masks == "box") != (self.mask_resolution > 0):
            raise ValueError(f"masks {self.masks!r} with mask_resolution {self.mask_resolution}: box masks "
                             "have a resolution, the others none")

    @property
    def has_masks(self) -> bool:
        return self.masks != "none"

    @property
    def has_sem_seg(self) -> bool:
        return self.sem_seg_channels > 0


# detectron2's own meta-architectures: their class count key and class-specific layers
DETECTRON2_NUM_CLASSES_KEY = "MODEL.ROI_HEADS.NUM_CLASSES"
DETECTRON2_CLASS_LAYERS: Tuple[Tuple[str, int], ...] = (
    ("roi_heads.box_predictor.cls_score.weight", 1),  # classes + background
    ("roi_heads.mask_head.predictor.weight", 0),
    ("head.cls_score.weight", 0),  # RetinaNet: num_anchors x classes, reported as is
)


def model_outputs(model) -> ModelOutputs:
    """``model.outputs`` (DDP-wrapped or not); boxes only for a model that declares none."""
    model = getattr(model, "module", model)
    declared = getattr(model, "outputs", None)
    if isinstance(declared, ModelOutputs):
        return declared
    return ModelOutputs()


def class_layers_of(model) -> Tuple[Tuple[str, int], ...]:
    model = getattr(model, "module", model)
    return tuple(getattr(model, "class_layers", ())) or DETECTRON2_CLASS_LAYERS


def num_classes_key_of(cfg) -> str:
    """The config key of the class count of the model ``cfg`` builds, as its registered
    meta-architecture declares it (detectron2's own: ``MODEL.ROI_HEADS.NUM_CLASSES``)."""
    from detectron2.modeling import META_ARCH_REGISTRY

    try:
        arch = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    except KeyError:
        return DETECTRON2_NUM_CLASSES_KEY
    key = getattr(arch, "num_classes_key", None)
    if key is None and cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and "FCOS" in cfg.MODEL \
            and cfg.MODEL.PROPOSAL_GENERATOR.NAME == "FCOS":
        return "MODEL.FCOS.NUM_CLASSES"  # FCOS + ROI heads (centermask2's files): FCOS classifies
    return key or DETECTRON2_NUM_CLASSES_KEY


def config_value(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node
