"""Run a trained model on single images or video frames and draw its predictions.

``Predictor`` wraps :class:`blendmask.engine.Predictor` (weights-only checkpoint loading): it
returns the instances on the CPU with ``score >= confidence_threshold`` and draws them (masks,
boxes, class names, scores) with detectron2's ``Visualizer``, or ``VideoVisualizer`` for video
frames (colours stay with the tracked instances from frame to frame). ``class_metadata(cfg)`` says
which class names are drawn. For panoptic models ``predict`` also returns the panoptic map, which
``draw`` paints with ``Visualizer.draw_panoptic_seg`` (things and stuff, ``panoptic_metadata``).
"""

from typing import Dict, List, Optional

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.structures import Instances
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, GenericMask, Visualizer

from ..engine.predictor import Predictor as ModelPredictor
from ..inference import mask_crops, select_masks
from .deprecation import deprecated_names

COCO_METADATA_NAME = "coco_2017_val"  # registered with its 80 class names by ``import detectron2.data``
# Above this many pixels ``DrawingPredictor.draw`` draws with OpenCV in place of detectron2's Visualizer:
# matplotlib resamples the photo in floating point, about 100 bytes a pixel (2.5 GB for a 24 MP
# photo with nothing drawn on it), where OpenCV needs a copy of the photo (3 bytes a pixel).
LARGE_PHOTO = 4_000_000


def num_classes(cfg) -> int:
    """Number of classes the model predicts: the config key its meta-architecture declares
    (``num_classes_key``, see modeling/contract.py)."""
    from ..modeling.contract import config_value, num_classes_key_of

    return int(config_value(cfg, num_classes_key_of(cfg)))


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


class DrawingPredictor:
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
        result = {"instances": select_instances(instances, instances.scores >= self.confidence_threshold)}
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
        with ``panoptic_seg`` ((H, W) ids, segments_info from :meth:`predict`) the panoptic map instead.
        Photos above ``LARGE_PHOTO`` pixels are drawn with OpenCV (:func:`draw_instances_opencv`),
        whose memory is one copy of the photo; smaller ones with detectron2's ``Visualizer``."""
        if panoptic_seg is None and video_visualizer is None and image_bgr.shape[0] * image_bgr.shape[1] > LARGE_PHOTO:
            return draw_instances_opencv(image_bgr, instances, self.metadata)
        image_rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        if panoptic_seg is not None:
            ids, segments_info = panoptic_seg
            visualizer = Visualizer(image_rgb, panoptic_metadata(self.metadata, segments_info))
            drawn = visualizer.draw_panoptic_seg(ids, segments_info)
        elif video_visualizer is not None:
            drawn = video_visualizer.draw_instance_predictions(image_rgb, instances)
        else:
            drawn = draw_instances(Visualizer(image_rgb, self.metadata, instance_mode=ColorMode.IMAGE), instances)
        return np.ascontiguousarray(drawn.get_image()[:, :, ::-1])


def select_instances(instances: Instances, keep: torch.Tensor) -> Instances:
    """``instances[keep]`` (a boolean mask) with the masks copied box by box
    (:func:`blendmask.inference.select_masks`), not at the photo's size; ``instances`` itself when
    every one is kept."""
    if bool(keep.all()):
        return instances
    masks = instances.get("pred_masks") if instances.has("pred_masks") else None
    if isinstance(masks, torch.Tensor):
        instances.remove("pred_masks")
    selected = instances[keep]
    if isinstance(masks, torch.Tensor):
        instances.pred_masks = masks
        selected.pred_masks = select_masks(masks, keep)
    return selected


def draw_instances_opencv(image_bgr: np.ndarray, instances: Instances, metadata: Metadata) -> np.ndarray:
    """The BGR image with the instances drawn as ``Visualizer`` draws them in ColorMode.IMAGE (masks
    filled at alpha 0.5 and outlined, boxes, "class score%" labels), with OpenCV, mask by mask in
    each mask's box region: memory of one copy of the image, whatever its size."""
    import cv2
    from detectron2.utils.colormap import random_color

    out = image_bgr.copy()
    height, width = out.shape[:2]
    line = max(1, round(max(height, width) / 800))
    font_scale = max(0.5, max(height, width) / 1600)
    names = metadata.get("thing_classes", None)
    masks = instances.pred_masks if instances.has("pred_masks") else None
    crops = mask_crops(masks) if isinstance(masks, torch.Tensor) else iter(())
    boxes = instances.pred_boxes.tensor.tolist() if instances.has("pred_boxes") else [None] * len(instances)
    classes = instances.pred_classes.tolist() if instances.has("pred_classes") else [None] * len(instances)
    scores = instances.scores.tolist() if instances.has("scores") else [None] * len(instances)
    for box, cls, score in zip(boxes, classes, scores):
        color = tuple(int(c) for c in random_color(rgb=False, maximum=255))
        crop = next(crops, None)
        if crop is not None:
            x0, y0, mask = crop
            if mask.numel():
                m = mask.numpy()
                region = out[y0:y0 + m.shape[0], x0:x0 + m.shape[1]]
                region[m] = (region[m] * 0.5 + np.array(color) * 0.5).astype(np.uint8)
                contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(region, contours, -1, color, line)
        if box is not None:
            bx0, by0, bx1, by1 = (int(round(v)) for v in box)
            cv2.rectangle(out, (bx0, by0), (bx1, by1), color, line)
            label = None if cls is None else (names[cls] if names and cls < len(names) else str(cls))
            if label is not None and score is not None:
                label = f"{label} {score * 100:.0f}%"
            if label:
                (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, line)
                ty = max(by0, th + base)
                cv2.rectangle(out, (bx0, ty - th - base), (bx0 + tw, ty), (0, 0, 0), -1)
                cv2.putText(out, label, (bx0, ty - base), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255),
                            line, cv2.LINE_AA)
    return out


def mask_polygons(masks: torch.Tensor, height: int, width: int) -> List[GenericMask]:
    """Outlines (polygons in image pixels) of (N, H, W) bool masks, traced in each mask's box
    region (:func:`blendmask.inference.mask_crops`) instead of at the photo's size."""
    import cv2

    out = []
    for x0, y0, crop in mask_crops(masks):
        polygons = []
        if crop.numel():
            contours, _ = cv2.findContours(np.ascontiguousarray(crop.numpy(), dtype=np.uint8), cv2.RETR_CCOMP,
                                           cv2.CHAIN_APPROX_NONE)
            for contour in contours:
                if len(contour) >= 3:  # a polygon; pixel centres at +0.5 as detectron2 draws them
                    polygons.append((contour.reshape(-1, 2) + (x0 + 0.5, y0 + 0.5)).reshape(-1))
        out.append(GenericMask(polygons or [np.zeros(6)], height, width))
    return out


def draw_instances(visualizer: Visualizer, instances: Instances):
    """``visualizer.draw_instance_predictions(instances)`` (ColorMode.IMAGE: boxes, class names,
    scores, masks at alpha 0.5) with the masks outlined box by box, so drawing 100 masks on a
    48 MP photo does not make 100 photo-sized copies."""
    if not instances.has("pred_masks") or not isinstance(instances.pred_masks, torch.Tensor):
        return visualizer.draw_instance_predictions(instances)
    names = visualizer.metadata.get("thing_classes", None)
    classes = instances.pred_classes.tolist() if instances.has("pred_classes") else None
    labels = None
    if classes is not None:
        labels = [names[c] if names and c < len(names) else str(c) for c in classes]
        if instances.has("scores"):
            labels = [f"{label} {score * 100:.0f}%" for label, score in zip(labels, instances.scores.tolist())]
    height, width = visualizer.output.height, visualizer.output.width
    return visualizer.overlay_instances(
        masks=mask_polygons(instances.pred_masks, height, width),
        boxes=instances.pred_boxes if instances.has("pred_boxes") else None,
        labels=labels, alpha=0.5,
    )


__getattr__ = deprecated_names(__name__, {"Predictor": lambda: DrawingPredictor})
