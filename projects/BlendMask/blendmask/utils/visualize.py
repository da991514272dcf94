"""Run a trained model on single images or video frames and draw its predictions.

``Predictor`` wraps :class:`blendmask.engine.Predictor` (weights-only checkpoint loading): it
returns the instances on the CPU with ``score >= confidence_threshold`` and draws them (masks,
boxes, class names, scores) with detectron2's ``Visualizer``, or ``VideoVisualizer`` for video
frames (colours stay with the tracked instances from frame to frame). ``class_metadata(cfg)`` says
which class names are drawn. For panoptic models ``predict`` also returns the panoptic map, which
``draw`` paints with ``Visualizer.draw_panoptic_seg`` (things and stuff, ``panoptic_metadata``).
"""

from typing import Dict, Optional

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.structures import Instances
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

from ..engine.predictor import Predictor as ModelPredictor

COCO_METADATA_NAME = "coco_2017_val"  # registered with its 80 class names by ``import detectron2.data``


def num_classes(cfg) -> int:
    """Number of classes the model predicts: ``MODEL.FCOS.NUM_CLASSES`` (else ``MODEL.ROI_HEADS``)."""
    if "FCOS" in cfg.MODEL:
        return cfg.MODEL.FCOS.NUM_CLASSES
    return cfg.MODEL.ROI_HEADS.NUM_CLASSES


def class_metadata(cfg, saved_classes=()) -> Metadata:
    """Metadata whose ``thing_classes`` name the model's classes, for detectron2's visualizers.

    In order: the names saved in the checkpoint (``saved_classes``; train_net.py's checkpoints carry
    their training set's names), the first test dataset's names (``cfg.DATASETS.TEST[0]``, when
    registered in this process with as many ``thing_classes`` as the model has classes), COCO's 80
    names when the config's test set is a COCO one, else none (class numbers are drawn).
    """
    n = num_classes(cfg)
    if saved_classes and len(saved_classes) == n:
        return Metadata(name="classes saved with the weights", thing_classes=list(saved_classes))
    if len(cfg.DATASETS.TEST):
        metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        if len(metadata.get("thing_classes", [])) == n:
            return metadata
    if n == 80 and any(name.startswith("coco_") for name in cfg.DATASETS.TEST):
        return MetadataCatalog.get(COCO_METADATA_NAME)
    return Metadata(name="unnamed classes")


def panoptic_metadata(metadata: Metadata, segments_info) -> Metadata:
    """``metadata`` when its ``stuff_classes`` name every stuff segment; otherwise a copy with numbered
    stuff names ("stuff 1", ...; label 0 is the things class) so the Visualizer can label them."""
    stuff = [s["category_id"] for s in segments_info if not s.get("isthing", False)]
    names = metadata.get("stuff_classes", None)
    if names is not None and all(c < len(names) for c in stuff):
        return metadata
    n = max(stuff, default=0) + 1
    return Metadata(name=f"{metadata.name} with numbered stuff", thing_classes=list(metadata.get("thing_classes", [])),
                    stuff_classes=["things"] + [f"stuff {k}" for k in range(1, n)])


class Predictor:
    """A model from ``cfg`` (weights from ``cfg.MODEL.WEIGHTS``, loaded weights-only: a checkpoint
    that needs pickled code raises ``UnsafeCheckpointError``) that predicts and draws instances.

    Args:
        cfg: a detectron2 config (``cfg.INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST`` set the resize).
        confidence_threshold: instances with a lower score are dropped.
        metadata: class names to draw; default ``class_metadata(cfg, names saved in the weights)``.
    """

    def __init__(self, cfg, confidence_threshold: float = 0.5, metadata: Optional[Metadata] = None):
        self.predictor = ModelPredictor(cfg)
        self.confidence_threshold = confidence_threshold
        saved = getattr(self.predictor.model, "thing_classes", [])
        self.metadata = metadata if metadata is not None else class_metadata(cfg, saved)

    def __call__(self, image_bgr: np.ndarray) -> Instances:
        """Instances (on the CPU, at the image's size) predicted for an (H, W, 3) uint8 BGR image."""
        return self.predict(image_bgr)["instances"]

    def predict(self, image_bgr: np.ndarray) -> Dict[str, object]:
        """{"instances": the instances of ``__call__``} plus, for a panoptic model, "panoptic_seg"
        ((H, W) segment ids on the CPU, segments_info): the model's own combine, whose
        MODEL.PANOPTIC_FPN.COMBINE thresholds apply instead of ``confidence_threshold``."""
        outputs = self.predictor(image_bgr)
        instances = outputs["instances"].to("cpu")
        result = {"instances": instances[instances.scores >= self.confidence_threshold]}
        if "panoptic_seg" in outputs:
            panoptic_seg, segments_info = outputs["panoptic_seg"]
            result["panoptic_seg"] = (panoptic_seg.to("cpu"), segments_info)
        return result

    def video_visualizer(self) -> VideoVisualizer:
        """A visualizer to pass to ``draw`` for the frames of one video."""
        return VideoVisualizer(self.metadata, ColorMode.IMAGE)

    def draw(
        self, image_bgr: np.ndarray, instances: Instances, video_visualizer: Optional[VideoVisualizer] = None,
        panoptic_seg=None,
    ) -> np.ndarray:
        """The BGR image (same size) with the instances' masks, boxes, class names and scores drawn;
        with ``panoptic_seg`` ((H, W) ids, segments_info from :meth:`predict`) the panoptic map instead."""
        image_rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        if panoptic_seg is not None:
            ids, segments_info = panoptic_seg
            visualizer = Visualizer(image_rgb, panoptic_metadata(self.metadata, segments_info))
            drawn = visualizer.draw_panoptic_seg(ids, segments_info)
        elif video_visualizer is not None:
            drawn = video_visualizer.draw_instance_predictions(image_rgb, instances)
        else:
            drawn = Visualizer(image_rgb, self.metadata, instance_mode=ColorMode.IMAGE).draw_instance_predictions(
                instances
            )
        return np.ascontiguousarray(drawn.get_image()[:, :, ::-1])
