"""FCOS-only detector meta-architecture (AdelaiDet's ``OneStageDetector``)."""

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_proposal_generator
from detectron2.structures import ImageList, Instances
from torch import nn

from ..checkpoint import convert_on_load
from .layers import syncbn_to_bn_for_single_process
from .postprocess import postprocess_instances


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
    with pred_boxes, scores, pred_classes.

    ``cpu_channels_last``: CPU inference feeds the backbone a channels-last (NHWC) batch, on which
    oneDNN's convolutions and the pooling run ~15% faster (same results up to float rounding); set
    it to False on the instance or the class to keep NCHW.
    """

    cpu_channels_last: bool = True

    @configurable
    def __init__(self, *, backbone, proposal_generator, pixel_mean, pixel_std):
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        syncbn_to_bn_for_single_process(self)
        convert_on_load(self)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        return dict(
            backbone=backbone,
            proposal_generator=build_proposal_generator(cfg, backbone.output_shape()),
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
        )

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalise, then zero-pad to the backbone's size divisibility."""
        for x in batched_inputs:
            check_input_image(x["image"])
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def backbone_input(self, images: ImageList) -> torch.Tensor:
        """The padded batch in the memory format the backbone runs fastest on (see class doc)."""
        if self.cpu_channels_last and not self.training and images.tensor.device.type == "cpu":
            return images.tensor.contiguous(memory_format=torch.channels_last)
        return images.tensor

    def gt_instances(self, batched_inputs) -> List[Instances]:
        """Ground truth of each image, checked: class ids must be in [0, NUM_CLASSES)."""
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("training needs 'instances' in every input dict")
        gt = [x["instances"].to(self.device) for x in batched_inputs]
        num_classes = self.proposal_generator.num_classes
        for inst, x in zip(gt, batched_inputs):
            classes = inst.gt_classes
            if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
                raise ValueError(
                    f"ground-truth class ids must lie in [0, {num_classes}) (MODEL.FCOS.NUM_CLASSES), got "
                    f"{sorted(set(classes.tolist()))} in {x.get('file_name', 'an input')}"
                )
        return gt

    def forward(self, batched_inputs: List[Dict]):
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(self.backbone_input(images))
        if self.training:
            _, losses = self.proposal_generator(images, features, self.gt_instances(batched_inputs))
            return losses
        detections, _ = self.proposal_generator(images, features)
        return self.postprocess(detections, batched_inputs, images.image_sizes)

    @staticmethod
    def postprocess(detections, batched_inputs, image_sizes):
        """Scale boxes (and paste masks) to each input's "height"/"width" (default: input size),
        as detectron2's ``detector_postprocess``."""
        results = []
        for det, inputs, image_size in zip(detections, batched_inputs, image_sizes):
            height = inputs.get("height", image_size[0])
            width = inputs.get("width", image_size[1])
            results.append({"instances": postprocess_instances(det, height, width)})
        return results

