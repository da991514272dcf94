"""A built-in instance-segmentation dataset: synthetic scenes of coloured shapes.

Each image has a textured background (smooth noise, stripes, checks or a gradient) and 2-6
shapes of five classes with random size, rotation and colour, painted in order so later shapes
occlude earlier ones. Annotations are COCO polygons of the *visible* part of each shape, traced
at 4x resolution, so they match the (anti-aliased) pixels. Generation is deterministic: image i
of a split depends only on (seed, split, i) and the spec (with the same numpy and OpenCV, the
files are byte-identical).

``build_shapes_dataset(root)`` writes ``root/<split>/*.png`` and ``root/<split>.json`` once (a
``spec.json`` stamp tells whether the cache matches the spec); ``register_shapes()`` builds the
cache if needed and registers ``shapes_train`` / ``shapes_val`` with ``register_coco_instances``.
"""

import dataclasses
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

logger = logging.getLogger(__name__)

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross")
SPLITS = ("train", "val")
GENERATOR_VERSION = 1
SUPERSAMPLE = 4  # shapes are drawn and traced at 4x, then the image is area-downsampled


@dataclasses.dataclass(frozen=True)
class ShapesSpec:
    """What to generate. Equal specs give byte-identical files."""

    image_size: int = 128
    num_train: int = 1000
    num_val: int = 200
    min_objects: int = 2
    max_objects: int = 6
    min_shape_size: float = 14.0  # diameter of the shape's circumscribed circle, pixels
    max_shape_size: float = 56.0
    min_visible_fraction: float = 0.45  # occluded shapes keep at least this much of their area
    seed: int = 0

    def num_images(self, split: str) -> int:
        return {"train": self.num_train, "val": self.num_val}[split]

    def stamp(self) -> Dict:
        return {"generator_version": GENERATOR_VERSION, **dataclasses.asdict(self)}


def default_root() -> Path:
    """``$BLENDMASK_DATASETS/shapes``, by default ``.cache/datasets/shapes`` under the current folder."""
    return Path(os.environ.get("BLENDMASK_DATASETS", os.path.join(".cache", "datasets"))) / "shapes"


# ---------------------------------------------------------------------------------------------
# drawing


def _unit_polygon(name: str, rng: np.random.Generator) -> np.ndarray:
    """(P, 2) vertices of a shape inscribed in the unit circle, centred at 0, before rotation."""
    if name == "circle":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if name == "square":
        t = np.pi / 4 + np.arange(4) * np.pi / 2
        return np.stack([np.cos(t), np.sin(t)], 1)
    if name == "triangle":
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.25, 0.25, 3)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if name == "star":
        t = np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.4, 0.5))
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if name == "cross":
        a = rng.uniform(0.28, 0.36)  # half-width of the arms
        b = math.sqrt(1 - a * a)  # arm ends touch the unit circle
        return np.array([(a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a), (-a, -b), (a, -b),
                         (a, -a), (b, -a), (b, a), (a, a)], dtype=np.float64)
    raise ValueError(name)


def _shape_polygon(name, center, diameter, angle, rng) -> np.ndarray:
    """(P, 2) polygon in image pixel coordinates (continuous; pixel i spans [i, i+1])."""
    pts = _unit_polygon(name, rng) * (diameter / 2)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return pts @ rot.T + np.asarray(center)


def _rasterize(poly: np.ndarray, size: int) -> np.ndarray:
    """Bool (size*S, size*S) mask of a polygon, drawn at the supersampled resolution."""
    s = SUPERSAMPLE
    canvas = np.zeros((size * s, size * s), np.uint8)
    pts = np.round((poly * s - 0.5) * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _smooth_noise(rng, size, cells) -> np.ndarray:
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 BGR texture in [0, 255]."""
    base = rng.uniform(50, 205, 3).astype(np.float32)
    other = np.clip(base + rng.uniform(-70, 70, 3), 0, 255).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    kind = rng.integers(4)
    if kind == 0:  # smooth noise
        w = 0.5 + 0.5 * _smooth_noise(rng, size, int(rng.integers(3, 9)))
    elif kind == 1:  # stripes
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(0.04, 0.2)
        w = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period)
    elif kind == 2:  # checks
        cells = int(rng.integers(4, 14))
        w = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2).astype(np.float32)
    else:  # gradient
        theta = rng.uniform(0, 2 * np.pi)
        w = xx * math.cos(theta) + yy * math.sin(theta)
        w = (w - w.min()) / max(float(w.max() - w.min()), 1e-6)
    img = base[None, None] * (1 - w[..., None]) + other[None, None] * w[..., None]
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.float32)


def _shape_colour(rng: np.random.Generator, avoid: List[np.ndarray]) -> np.ndarray:
    """A saturated BGR colour at some distance from the ``avoid`` colours (what lies beneath)."""
    for _ in range(30):
        hsv = np.array([[[rng.uniform(0, 180), rng.uniform(120, 255), rng.uniform(110, 255)]]], np.float32)
        bgr = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
        if all(np.linalg.norm(bgr - a) > 90 for a in avoid):
            break
    return bgr


def _visible_polygons(mask: np.ndarray) -> Tuple[List[List[float]], float]:
    """Outer contours of a supersampled mask as COCO polygons in image pixels, and the hole area.

    The hole area is how many image pixels of the filled contours the mask does not cover.
    """
    s = SUPERSAMPLE
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys, filled = [], np.zeros(mask.shape, np.uint8)
    for c in contours:
        if cv2.contourArea(c) < 2 * s * s:  # slivers smaller than ~2 pixels
            continue
        c = cv2.approxPolyDP(c, 1.0, True)
        if len(c) < 3:
            continue
        cv2.drawContours(filled, [c], -1, 1, thickness=cv2.FILLED)
        pts = (c.reshape(-1, 2).astype(np.float64) + 0.5) / s
        polys.append([round(float(v), 2) for v in pts.reshape(-1)])
    holes = np.count_nonzero(filled.astype(bool) & ~mask) / (s * s)
    return polys, holes


def _acceptable(full: np.ndarray, visible: np.ndarray, spec: ShapesSpec) -> bool:
    area = np.count_nonzero(full)
    vis = np.count_nonzero(visible)
    if area == 0 or vis < spec.min_visible_fraction * area or vis < 40 * SUPERSAMPLE**2:
        return False
    _, holes = _visible_polygons(visible)
    return holes <= 0.03 * vis / SUPERSAMPLE**2


def _occlusion_ok(new: np.ndarray, below: List[np.ndarray], spec: ShapesSpec) -> bool:
    """Whether every shape in ``below`` (bottom to top) stays acceptable with ``new`` on top."""
    above = new.copy()
    for full in reversed(below):
        if not _acceptable(full, full & ~above, spec):
            return False
        above |= full
    return True


def generate_image(spec: ShapesSpec, split: str, index: int) -> Tuple[np.ndarray, List[Dict]]:
    """One scene: (H, W, 3) uint8 BGR image and its annotations (COCO fields, no ids)."""
    rng = np.random.default_rng([spec.seed, SPLITS.index(split), index, GENERATOR_VERSION])
    size, s = spec.image_size, SUPERSAMPLE
    background = _background(rng, size)
    # nearest upsampling: after area downsampling, background pixels are exactly ``background``
    canvas = cv2.resize(background, (size * s, size * s), interpolation=cv2.INTER_NEAREST)
    objects = []  # (class index, full mask, colour)
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        for _attempt in range(25):
            cls = int(rng.integers(len(SHAPE_CLASSES)))
            diameter = math.exp(rng.uniform(math.log(spec.min_shape_size), math.log(spec.max_shape_size)))
            margin = 0.3 * diameter
            center = rng.uniform(margin, size - margin, 2)
            poly = _shape_polygon(SHAPE_CLASSES[cls], center, diameter, rng.uniform(0, 2 * np.pi), rng)
            full = _rasterize(poly, size)
            if _acceptable(full, full, spec) and _occlusion_ok(full, [o[1] for o in objects], spec):
                break
        else:
            continue  # no room for this shape
        beneath = [canvas[full].mean(axis=0)] + [c for _, m, c in objects if (m & full).any()]
        objects.append((cls, full, _shape_colour(rng, beneath)))
    annotations = []
    above = np.zeros((size * s, size * s), bool)
    visible_masks = []
    for cls, full, _ in reversed(objects):
        visible_masks.append((cls, full & ~above))
        above |= full
    for _, full, colour in objects:  # paint bottom to top, with a little shading
        shade = 1 + 0.15 * cv2.resize(_smooth_noise(rng, size, 3), (size * s, size * s))
        ys, xs = np.nonzero(full)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        paint = np.clip(colour[None, None] * shade[box][..., None], 0, 255)
        canvas[box] = np.where(full[box][..., None], paint, canvas[box])
    for cls, visible in reversed(visible_masks):
        polys, _ = _visible_polygons(visible)
        if not polys:
            continue
        xy = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polys])
        x0, y0 = xy.min(0)
        x1, y1 = xy.max(0)
        annotations.append({
            "category_id": cls + 1,
            "segmentation": polys,
            "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
            "area": round(np.count_nonzero(visible) / s**2, 2),
            "iscrowd": 0,
        })
    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), annotations


# ---------------------------------------------------------------------------------------------
# cache and registration


def _write_split(spec: ShapesSpec, root: Path, split: str) -> Path:
    image_dir = root / split
    if image_dir.exists():
        shutil.rmtree(image_dir)
    image_dir.mkdir(parents=True)
    images, annotations = [], []
    for i in range(spec.num_images(split)):
        image, anns = generate_image(spec, split, i)
        file_name = f"{i:05d}.png"
        cv2.imwrite(str(image_dir / file_name), image)
        images.append({"id": i + 1, "file_name": file_name, "height": spec.image_size, "width": spec.image_size})
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **ann})
    coco = {
        "info": {"description": f"blendmask synthetic shapes, {split} split", "version": str(GENERATOR_VERSION)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(SHAPE_CLASSES)],
    }
    json_path = root / f"{split}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(coco, separators=(",", ":")))
    tmp.replace(json_path)
    return json_path


def build_shapes_dataset(root: Optional[os.PathLike] = None, spec: Optional[ShapesSpec] = None) -> Dict[str, Path]:
    """Write the dataset under ``root`` unless a cache made from the same spec is there.

    ``root`` defaults to :func:`default_root`, ``spec`` to ``ShapesSpec()``. Returns
    {split: json path}. Images are ``root/<split>/<index>.png``.
    """
    spec = spec if spec is not None else ShapesSpec()
    root = Path(root) if root is not None else default_root()
    stamp_path = root / "spec.json"
    paths = {split: root / f"{split}.json" for split in SPLITS}
    stamp = spec.stamp()
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp and all(p.exists() for p in paths.values()):
        return paths
    logger.info(f"Generating the shapes dataset in {root} ({spec.num_train} train, {spec.num_val} val images)")
    root.mkdir(parents=True, exist_ok=True)
    if stamp_path.exists():
        stamp_path.unlink()
    for split in SPLITS:
        _write_split(spec, root, split)
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return paths


def register_shapes(
    root: Optional[os.PathLike] = None, spec: Optional[ShapesSpec] = None, prefix: str = "shapes"
) -> Dict[str, str]:
    """Build the dataset if needed and register ``<prefix>_train`` and ``<prefix>_val``.

    Registration uses detectron2's ``register_coco_instances``; the metadata carries
    ``thing_classes``. Calling it again with the same root is harmless. Returns {split: name}.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    root = (Path(root) if root is not None else default_root()).resolve()
    paths = build_shapes_dataset(root, spec)
    names = {}
    for split, json_path in paths.items():
        name = f"{prefix}_{split}"
        names[split] = name
        if name in DatasetCatalog.list():
            if MetadataCatalog.get(name).get("json_file") == str(json_path):
                continue
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_coco_instances(name, {"thing_classes": list(SHAPE_CLASSES)}, str(json_path), str(root / split))
    return names
