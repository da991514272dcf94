"""The models of the models x paths test matrix (tests/test_matrix.py): each one's config, the
overrides that make it tiny (64-pixel inputs, narrow layers, thresholds at 0 so an untrained model
still predicts), and a generated COCO-format dataset with polygon, RLE or mixed masks.

A new model joins the matrix by adding one ``MatrixModel`` here.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import toy_model  # noqa: F401  (registers ToyMaskDetector, a model defined here through the contract alone)
from PIL import Image
from pycocotools import mask as mask_util

from blendmask.data.shapes import ShapesSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
CLASSES = ("apple", "brick", "cup")
IMAGE_H, IMAGE_W = 64, 80
MASK_KINDS = ("polygon", "rle", "mixed")

# every model: 64-pixel inputs, 2 images per batch, 2 iterations, no decay, no workers
COMMON = [
    "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "96",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.01",
    "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "1000",
    "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0", "SEED", "1",
]
ONE_CONV_TOWERS = ["MODEL.FCOS.NUM_CLS_CONVS", "1", "MODEL.FCOS.NUM_BOX_CONVS", "1"]
RESNET18 = ["MODEL.FPN.OUT_CHANNELS", "32", "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.POST_NMS_TOPK_TEST",
            "10", *ONE_CONV_TOWERS]
# FCOS's FPN starts at P3 (P2 is the basis module's: left unused, DDP refuses it)
FCOS_P3_UP = ["MODEL.RESNETS.OUT_FEATURES", "['res3', 'res4', 'res5']", "MODEL.FPN.IN_FEATURES",
              "['res3', 'res4', 'res5']"]
BLENDMASK = RESNET18 + ["MODEL.BASIS_MODULE.CONVS_DIM", "32"]
CENTERMASK = ["MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_MASK_HEAD.CONV_DIM", "32", "MODEL.ROI_MASKIOU_HEAD.CONV_DIM",
              "16", "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.POST_NMS_TOPK_TEST", "10",
              "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32"]
# FCOS on P3-P5 only (P6/P7 of 64-pixel images are 1x1: GroupNorm of 1 value per group cannot train)
P3_TO_P5 = ["MODEL.FCOS.TOP_LEVELS", "0", "MODEL.FCOS.IN_FEATURES", "['p3', 'p4', 'p5']", "MODEL.FCOS.FPN_STRIDES",
            "[8, 16, 32]", "MODEL.FCOS.SIZES_OF_INTEREST", "[32, 64]"]
SOLOV2 = [
    "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.SOLOV2.INSTANCE_IN_CHANNELS", "32", "MODEL.SOLOV2.MASK_IN_CHANNELS", "32",
    "MODEL.SOLOV2.INSTANCE_CHANNELS", "32", "MODEL.SOLOV2.MASK_CHANNELS", "32", "MODEL.SOLOV2.NUM_INSTANCE_CONVS", "1",
    "MODEL.SOLOV2.SCORE_THR", "0.0", "MODEL.SOLOV2.MASK_THR", "0.0", "MODEL.SOLOV2.UPDATE_THR", "0.0",
    "MODEL.SOLOV2.NMS_PRE", "50", "MODEL.SOLOV2.MAX_PER_IMG", "20", "MODEL.SOLOV2.NUM_GRIDS", "[10, 8, 6, 4, 3]",
    "MODEL.SOLOV2.NUM_MASKS", "32", "MODEL.SOLOV2.NUM_KERNELS", "32",
]


@dataclass(frozen=True)
class MatrixModel:
    key: str
    config: Path
    opts: List[str] = field(default_factory=list)
    # why the model cannot train on a plain COCO instances json (None: it can)
    no_coco_data: Optional[str] = None
    exports: bool = True

    @property
    def all_opts(self) -> List[str]:
        return COMMON + self.opts


MODELS = {
    m.key: m
    for m in (
        MatrixModel("fcos", CONFIGS / "Shapes" / "BlendMask_R18.yaml",
                    ["MODEL.META_ARCHITECTURE", "OneStageDetector", "MODEL.MASK_ON", "False", *FCOS_P3_UP, *RESNET18]),
        MatrixModel("blendmask", CONFIGS / "Shapes" / "BlendMask_R18.yaml", BLENDMASK),
        MatrixModel("centermask_lite", CONFIGS / "Shapes" / "CenterMask_Lite_V19.yaml",
                    CENTERMASK + ["MODEL.VOVNET.CONV_BODY", "V-19-slim-dw-eSE"]),
        MatrixModel("centermask_resnet", CONFIGS / "CenterMask" / "centermask_R_50_FPN_ms_3x.yaml",
                    CENTERMASK + ["MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS",
                                  "64", "MODEL.RESNETS.NORM", "BN", "MODEL.RESNETS.STEM_OUT_CHANNELS", "32",
                                  *ONE_CONV_TOWERS, "MODEL.ROI_MASK_HEAD.NUM_CONV", "1",
                                  "MODEL.ROI_MASKIOU_HEAD.NUM_CONV", "1", *P3_TO_P5]),
        MatrixModel("solov2", CONFIGS / "Shapes" / "SOLOv2_R18.yaml", SOLOV2),
        MatrixModel("aggmask", CONFIGS / "Shapes" / "AggMask_R18.yaml", SOLOV2),
        MatrixModel("toy_contract_model", CONFIGS / "Shapes" / "BlendMask_R18.yaml",
                    ["MODEL.META_ARCHITECTURE", "ToyMaskDetector", *FCOS_P3_UP, *RESNET18]),
        MatrixModel("panoptic", CONFIGS / "Shapes" / "BlendMask_Panoptic_R18.yaml",
                    BLENDMASK + ["MODEL.SEM_SEG_HEAD.CONVS_DIM", "32"],
                    no_coco_data="needs semantic ground truth: trains on the panoptic shapes instead"),
    )
}

PANOPTIC_SHAPES = ShapesSpec(image_size=64, num_train=4, num_val=2, min_shape_size=12, max_shape_size=30)


def write_coco_dataset(root: Path, kind: str, num_images: int = 4, seed: int = 0):
    """``num_images`` IMAGE_H x IMAGE_W images with 2-3 rectangles and L shapes each, as a COCO json
    (ids 1..3, names CLASSES) whose masks are polygons, RLE, or alternately both ("mixed").
    Returns (json path, image folder)."""
    if kind not in MASK_KINDS:
        raise ValueError(f"kind must be one of {MASK_KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        pixels = rng.integers(0, 60, (IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
        for j in range(2 + i % 2):
            x0, y0 = int(rng.integers(0, IMAGE_W - 30)), int(rng.integers(0, IMAGE_H - 30))
            w, h = int(rng.integers(16, 30)), int(rng.integers(16, 30))
            x1, y1 = x0 + w, y0 + h
            cls = (i + j) % 3
            # an L: the box without its top-right quarter (so polygon and mask areas differ from the box's)
            xm, ym = x0 + w // 2, y0 + h // 2
            polygon = [x0, y0, xm, y0, xm, ym, x1, ym, x1, y1, x0, y1]
            mask = mask_util.decode(mask_util.frPyObjects([polygon], IMAGE_H, IMAGE_W))[:, :, 0]
            pixels[mask.astype(bool)] = (200, 80 * cls, 255 - 80 * cls)
            as_rle = kind == "rle" or (kind == "mixed" and j % 2 == 0)
            if as_rle:
                rle = mask_util.encode(np.asfortranarray(mask))
                segmentation = {"size": rle["size"], "counts": rle["counts"].decode()}
            else:
                segmentation = [[float(v) for v in polygon]]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": cls + 1, "iscrowd": 0,
                                "bbox": [x0, y0, w, h], "area": int(mask.sum()), "segmentation": segmentation})
        Image.fromarray(pixels).save(image_dir / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": IMAGE_H, "width": IMAGE_W})
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(CLASSES)]
    json_file = root / f"{kind}.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return json_file, image_dir


def train_models_in_processes(keys, root: str, coco_files: dict, panoptic_root: str):
    """In each process of a launch: train every model of ``keys`` for 2 iterations on the mixed
    data as ``train_net.py --num-gpus 2`` does (its ``setup``, then ``blendmask.engine.Trainer``),
    then save this process's weights and the world size to <root>/<key>/rank<r>.pt."""
    import importlib.util

    import torch
    from detectron2.utils import comm

    from blendmask.data.shapes_panoptic import register_shapes_panoptic
    from blendmask.engine import Trainer

    spec = importlib.util.spec_from_file_location("matrix_train_net", REPO_ROOT / "train_net.py")
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    panoptic = register_shapes_panoptic(Path(panoptic_root), PANOPTIC_SHAPES, prefix="matrix_shapes")
    json_file, images = coco_files["mixed"]
    for key in keys:
        model = MODELS[key]
        if model.no_coco_data:
            data = ["DATASETS.TRAIN", f"('{panoptic['train']}',)", "DATASETS.TEST", "()"]
        else:
            data = ["--coco-dataset", "matrix_mixed", json_file, images, "DATASETS.TRAIN", "('matrix_mixed',)",
                    "DATASETS.TEST", "()"]
        out = Path(root) / key
        args = train_net.parse_args(["--config-file", str(model.config), *data, *model.all_opts,
                                     "OUTPUT_DIR", str(out)])
        trainer = Trainer(train_net.setup(args))
        trainer.resume_or_load(resume=False)
        trainer.train()
        net = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        torch.save({"world_size": comm.get_world_size(), "state": state}, out / f"rank{comm.get_rank()}.pt")
        comm.synchronize()
