"""FCOS-only detector meta-architecture (AdelaiDet's ``OneStageDetector``), and the inference core
that every model built on FCOS shares with its export."""

from typing import Dict, List, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_proposal_generator
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ..checkpoint import convert_on_load
from ..config.ignored import warn_ignored_keys
from ..engine.precision import set_inference_precision
from ..inference import EAGER, InferenceBackend, postprocess_detections
from .contract import ModelOutputs
from .fcos import FCOSOutput
from .layers import syncbn_to_bn_for_single_process


def check_input_image(image: torch.Tensor, min_size: int = 1) -> None:
    """Reject inputs that would fail deep inside torch with a clear message."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"each input 'image' must be a (3, H, W) tensor in the config's INPUT.FORMAT, got {shape}")
    if min(image.shape[-2:]) < min_size:
        raise ValueError(f"input image {tuple(image.shape[-2:])} is smaller than {min_size} pixels")


@META_ARCH_REGISTRY.register()
class OneStageDetector(nn.Module):
    """backbone -> proposal generator (FCOS) -> detections resized to each input's height/width.

    Input: detectron2's list of dicts with "image" (3, H, W) and optionally "height", "width",
    "instances". Training returns the loss dict; inference a list of {"instances": Instances}
    with pred_boxes, scores, pred_classes (and pred_masks for models with a mask branch).

    Inference is :meth:`inference`, written once for eager PyTorch and export: subclasses add
    their mask branch in :meth:`add_masks`. Speed-ups (config keys, today's behaviour by default):
    ``channels_last_on_cpu`` (TEST.CHANNELS_LAST_ON_CPU) feeds the backbone a channels-last batch
    on CPU, where oneDNN's convolutions run ~15% faster (same results up to float rounding);
    ``lazy_paste`` (TEST.LAZY_PASTE) pastes masks into a lazily zeroed output on CPU, only around
    the boxes (bit-equal to detectron2's paste); ``precision`` (TEST.PRECISION) runs eval-mode
    forwards under autocast (:mod:`blendmask.engine.precision`), post-processing in float32.
    """

    mask_on = False  # whether add_masks adds "mask_probs" (n, R, R), R = mask_resolution
    # the model contract (modeling/contract.py)
    num_classes_key = "MODEL.FCOS.NUM_CLASSES"
    class_layers = (("proposal_generator.fcos_head.cls_logits.weight", 0),)

    @configurable
    def __init__(self, *, backbone, proposal_generator, pixel_mean, pixel_std, channels_last_on_cpu: bool = True,
                 lazy_paste: bool = True, precision: str = "fp32"):
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.channels_last_on_cpu = channels_last_on_cpu
        self.lazy_paste = lazy_paste
        syncbn_to_bn_for_single_process(self)
        convert_on_load(self)
        set_inference_precision(self, precision)  # TEST.PRECISION: autocast around eval-mode forwards

    @classmethod
    def from_config(cls, cfg):
        warn_ignored_keys(cfg)  # also for configs not read through blendmask.load_config
        backbone = build_backbone(cfg)
        return dict(
            backbone=backbone,
            proposal_generator=build_proposal_generator(cfg, backbone.output_shape()),
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
            channels_last_on_cpu=cfg.TEST.CHANNELS_LAST_ON_CPU,
            lazy_paste=cfg.TEST.LAZY_PASTE,
            precision=cfg.TEST.PRECISION,
        )

    @property
    def num_classes(self) -> int:
        return self.proposal_generator.num_classes

    @property
    def outputs(self) -> ModelOutputs:
        """What :meth:`inference` returns (see :class:`~blendmask.modeling.contract.ModelOutputs`)."""
        return ModelOutputs("box", self.mask_resolution) if self.mask_on else ModelOutputs()

    def postprocessing_spec(self) -> dict:
        """The inference settings an export bakes in (FCOS's thresholds, top-k, NMS)."""
        fcos = self.proposal_generator
        return {
            "score_threshold": fcos.inference_thresh[False], "thresh_with_ctr": fcos.thresh_with_ctr,
            "pre_nms_topk": fcos.pre_nms_topk[False], "nms_threshold": fcos.nms_thresh,
            "post_nms_topk": fcos.post_nms_topk[False], "mask_threshold": 0.5,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalise, then zero-pad to the backbone's size divisibility."""
        for x in batched_inputs:
            check_input_image(x["image"])
        images = [self.normalize(x["image"].to(self.device)) for x in batched_inputs]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.pixel_mean) / self.pixel_std

    def backbone_input(self, batch: torch.Tensor) -> torch.Tensor:
        """The padded batch in the memory format the backbone runs fastest on (see class doc)."""
        if self.channels_last_on_cpu and not self.training and batch.device.type == "cpu":
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    def gt_instances(self, batched_inputs) -> List[Instances]:
        """Ground truth of each image, checked: class ids must be in [0, NUM_CLASSES)."""
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("training needs 'instances' in every input dict")
        gt = [x["instances"].to(self.device) for x in batched_inputs]
        num_classes = self.num_classes
        for inst, x in zip(gt, batched_inputs):
            classes = inst.gt_classes
            if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
                raise ValueError(
                    f"ground-truth class ids must lie in [0, {num_classes}) ({self.num_classes_key}), got "
                    f"{sorted(set(classes.tolist()))} in {x.get('file_name', 'an input')}"
                )
        return gt

    def forward(self, batched_inputs: List[Dict]):
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(self.backbone_input(images.tensor))
        if self.training:
            return self.losses(batched_inputs, images, features)
        output_sizes = [(x.get("height", h), x.get("width", w))
                        for x, (h, w) in zip(batched_inputs, images.image_sizes)]
        results = self.inference(features, images.image_sizes, output_sizes, self.eager_backend(images.tensor.device))
        return [{"instances": self.to_instances(r, size)} for r, size in zip(results, output_sizes)]

    def losses(self, batched_inputs, images: ImageList, features) -> Dict[str, torch.Tensor]:
        return self.proposal_generator(images, features, self.gt_instances(batched_inputs)).losses

    def eager_backend(self, device) -> InferenceBackend:
        paste = "lazy" if self.lazy_paste and device.type == "cpu" else "detectron2"
        return InferenceBackend(nms=EAGER.nms, paste=paste)

    def inference(
        self, features: Dict[str, torch.Tensor], image_sizes: Sequence, output_sizes: Sequence,
        backend: InferenceBackend = EAGER,
    ) -> List[Dict[str, torch.Tensor]]:
        """The inference core, run by eager ``forward`` and by the export alike.

        ``features``: the backbone's outputs for a batch; ``image_sizes``: each image's (h, w)
        before padding; ``output_sizes``: the (h, w) to scale results to. Sizes are ints, or 0-dim
        tensors when traced. Returns per image a dict: "boxes" (n, 4) clipped output pixels,
        "scores", "classes", "levels", "cells" and, with a mask branch, "mask_probs" (n, R, R) and
        "masks" (n, H, W) bool (unless ``backend.paste`` is None).
        """
        fcos = self.proposal_generator(None, features, nms_backend=backend.nms)
        detections = self.add_masks(features, fcos)
        return [
            postprocess_detections(det, in_size, out_size, paste=backend.paste)
            for det, in_size, out_size in zip(detections, image_sizes, output_sizes)
        ]

    def add_masks(self, features: Dict[str, torch.Tensor], fcos: FCOSOutput) -> List[Dict[str, torch.Tensor]]:
        """Models with a mask branch add "mask_probs" (n, R, R) to each image's detections."""
        return fcos.detections

    @staticmethod
    def to_instances(result: Dict[str, torch.Tensor], output_size) -> Instances:
        """One image's :meth:`inference` result as detectron2 ``Instances`` at ``output_size``."""
        instances = Instances(tuple(int(v) for v in output_size))
        instances.pred_boxes = Boxes(result["boxes"])
        instances.scores = result["scores"]
        instances.pred_classes = result["classes"]
        instances.fpn_levels = result["levels"]
        if "masks" in result:
            instances.pred_masks = result["masks"]
        return instances
