"""``blendmask-demo`` (and ``demo/demo.py``): run a model of the package on images, a video or a
webcam and draw what it finds.

Masks, boxes, class names and scores are drawn with detectron2's ``Visualizer``; for a panoptic
BlendMask (configs/BlendMask/Panoptic) the panoptic map (things and stuff) is drawn on images. Examples::

    python demo/demo.py --config-file configs/BlendMask/R_50_1x.yaml --input photos/ 'more/*.jpg' \\
        --output drawn/ --opts MODEL.WEIGHTS blendmask_R_50_1x.pth
    python demo/demo.py --config-file configs/BlendMask/R_50_1x.yaml --video-input clip.mp4 \\
        --output drawn/ --opts MODEL.WEIGHTS blendmask_R_50_1x.pth

Inputs that cannot be read are skipped with a message; the exit code is 1 when any input failed.
The checkpoint loads weights-only: one that needs pickled code is refused (exit code 2) unless
BLENDMASK_ALLOW_PICKLE=1 is set.
"""

import argparse
import glob
import os
import sys
import time
import warnings
from pathlib import Path

# fvcore and detectron2 script a few functions when imported: a torch deprecation nobody can act on
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

import cv2
import torch
from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

from blendmask import load_config
from blendmask.checkpoint import CheckpointMismatchError, UnsafeCheckpointError
from blendmask.model_zoo import CONFIG_DIR, resolve_config_file
from blendmask.utils.visualize import DrawingPredictor as Predictor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov")
DEFAULT_CONFIG = str(CONFIG_DIR / "BlendMask" / "R_50_1x.yaml")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=DEFAULT_CONFIG, metavar="FILE", help="model config (yaml)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", metavar="PATH", help="image files, folders of images or globs")
    source.add_argument("--video-input", metavar="FILE", help="a video file")
    source.add_argument("--webcam", action="store_true", help="camera 0 (stop with Esc or Ctrl-C)")
    parser.add_argument(
        "--output",
        metavar="PATH",
        help="an image (or video) file for a single input, else a folder; without it, results are shown "
        "in a window when OpenCV has a GUI",
    )
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="lowest score drawn")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")
    return parser


def setup_cfg(args):
    """The config file, then the threshold, then ``--opts``; CPU when CUDA is unavailable."""
    cfg = load_config(resolve_config_file(args.config_file))  # unknown keys fail naming the closest valid key
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        print(f"MODEL.DEVICE: {cfg.MODEL.DEVICE} -> cpu (no CUDA device here)", file=sys.stderr)
        cfg.MODEL.DEVICE = "cpu"
    # FCOS scores are sqrt(cls * ctr) <= sqrt(cls): every instance scoring >= t passes a pre-threshold of
    # t**2 (0.999 absorbs float rounding), and fewer candidates make inference faster.
    threshold = args.confidence_threshold**2 * 0.999
    if "FCOS" in cfg.MODEL and threshold != cfg.MODEL.FCOS.INFERENCE_TH_TEST:
        print(f"MODEL.FCOS.INFERENCE_TH_TEST: {cfg.MODEL.FCOS.INFERENCE_TH_TEST} -> {threshold:.4g} "
              f"(--confidence-threshold {args.confidence_threshold}; drops no instance above it)", file=sys.stderr)
        cfg.MODEL.FCOS.INFERENCE_TH_TEST = threshold
    cfg = load_config(opts=args.opts, cfg=cfg)
    cfg.freeze()
    return cfg


def find_images(inputs):
    """Image paths named by ``--input`` (files, folders, globs), and messages for inputs naming none."""
    paths, errors = [], []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(str(p) for p in Path(item).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif os.path.isfile(item):
            found = [item]
        else:
            found = sorted(p for p in glob.glob(os.path.expanduser(item)) if os.path.isfile(p))
        if not found:
            errors.append(f"{item}: no such file, or no image in it or matching it")
        paths += found
    return paths, errors


def image_outputs(paths, output):
    """Where each drawn image goes: ``output`` itself for a single input when it names an image file,
    else ``output/<input file name>`` (``_1``, ``_2``... added when two inputs share a name)."""
    if output.lower().endswith(IMAGE_EXTENSIONS) and not os.path.isdir(output):
        if len(paths) > 1:
            sys.exit(f"--output {output} names one image but there are {len(paths)} inputs: give a folder")
        os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
        return [output]
    os.makedirs(output, exist_ok=True)
    outputs, used = [], set()
    for path in paths:
        stem, ext = os.path.splitext(os.path.basename(path))
        ext = ext if ext.lower() in IMAGE_EXTENSIONS else ".png"
        name, k = stem + ext, 0
        while name in used:
            k += 1
            name = f"{stem}_{k}{ext}"
        used.add(name)
        outputs.append(os.path.join(output, name))
    return outputs


class Window:
    """Shows images with OpenCV when it has a GUI; says once that it cannot otherwise."""

    def __init__(self):
        self.available = True

    def show(self, image_bgr, wait_ms: int) -> bool:
        """Show the image; False when the user pressed Esc."""
        if not self.available:
            return True
        try:
            cv2.namedWindow("BlendMask demo", cv2.WINDOW_NORMAL)
            cv2.imshow("BlendMask demo", image_bgr)
        except cv2.error:
            self.available = False
            tqdm.write("this OpenCV has no GUI and no --output was given: results are only printed")
            return True
        return cv2.waitKey(wait_ms) != 27


def run_on_images(predictor, paths, outputs) -> int:
    """Predict, print and draw each image (to its output or a window); returns how many failed."""
    failed, window = 0, Window()
    for i, path in enumerate(tqdm(paths, unit="image", disable=len(paths) < 2)):
        try:
            image = read_image(path, format="BGR")
        except Exception as e:  # PIL raises several exception types for unreadable files
            tqdm.write(f"skipped {path}: cannot read it as an image ({type(e).__name__}: {e})", file=sys.stderr)
            failed += 1
            continue
        start = time.perf_counter()
        predicted = predictor.predict(image)
        seconds = time.perf_counter() - start
        instances, panoptic = predicted["instances"], predicted.get("panoptic_seg")
        segments = f", {len(panoptic[1])} panoptic segments" if panoptic is not None else ""
        tqdm.write(f"{path}: {len(instances)} instance{'s' * (len(instances) != 1)}{segments} in {seconds:.2f} s")
        drawn = predictor.draw(image, instances, panoptic_seg=panoptic)
        if outputs:
            if not cv2.imwrite(outputs[i], drawn):
                tqdm.write(f"failed to write {outputs[i]}", file=sys.stderr)
                failed += 1
        elif not window.show(drawn, wait_ms=0):
            break
    return failed


def run_on_video(predictor, capture, writer) -> int:
    """Predict and draw every frame of an opened ``cv2.VideoCapture`` into ``writer`` (a
    ``cv2.VideoWriter``, or None to show them); returns the number of frames."""
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    visualizer, window, frames, seconds = predictor.video_visualizer(), Window(), 0, 0.0
    bar = tqdm(total=total, unit="frame")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            start = time.perf_counter()
            instances = predictor(frame)
            seconds += time.perf_counter() - start
            drawn = predictor.draw(frame, instances, visualizer)
            frames += 1
            bar.update()
            bar.set_postfix(instances=len(instances))
            if writer is not None:
                writer.write(drawn)
            elif not window.show(drawn, wait_ms=1):
                break
    except KeyboardInterrupt:
        pass
    finally:
        bar.close()
    if frames:
        print(f"{frames} frames, {seconds / frames:.2f} s per frame")
    return frames


def video_writer(output, name, capture):
    """A writer to ``output`` when it names a video file, else to ``output/<name>.mp4``, with the
    capture's frame size and rate (.avi: MJPG, else mp4v); None when it cannot be opened."""
    if not output.lower().endswith(VIDEO_EXTENSIONS):
        output = os.path.join(output, name + ".mp4")
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if output.lower().endswith(".avi") else "mp4v"))
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(output, fourcc, capture.get(cv2.CAP_PROP_FPS) or 30.0, size)
    if not writer.isOpened():
        print(f"cannot write video {output}", file=sys.stderr)
        return None
    print(f"writing {output}")
    return writer


def demo_images(args, cfg):
    """The demo on ``--input``; returns (failed inputs, inputs)."""
    paths, errors = find_images(args.input)
    for error in errors:
        print(error, file=sys.stderr)
    outputs = image_outputs(paths, args.output) if args.output else []
    failed = run_on_images(Predictor(cfg, args.confidence_threshold), paths, outputs)
    return failed + len(errors), len(paths) + len(errors)


def demo_video(args, cfg):
    """The demo on ``--video-input`` or ``--webcam``; returns (failed inputs, inputs)."""
    capture = cv2.VideoCapture(args.video_input if args.video_input else 0)
    writer = None
    try:
        if not capture.isOpened():
            print(f"cannot open {'video ' + args.video_input if args.video_input else 'the webcam'}", file=sys.stderr)
            return 1, 1
        if args.output:
            writer = video_writer(args.output, Path(args.video_input).stem if args.video_input else "webcam", capture)
            if writer is None:
                return 1, 1
        frames = run_on_video(Predictor(cfg, args.confidence_threshold), capture, writer)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if not frames:
        print("no frame could be read", file=sys.stderr)
    return int(frames == 0), 1


def main(argv=None) -> int:
    """Run the demo with command-line arguments ``argv``; returns the exit code."""
    from blendmask.utils.env import quiet_startup

    quiet_startup()
    args = get_parser().parse_args(argv)
    cfg = setup_cfg(args)
    if not cfg.MODEL.WEIGHTS or "ImageNetPretrained" in cfg.MODEL.WEIGHTS:
        print(
            f"warning: MODEL.WEIGHTS is {cfg.MODEL.WEIGHTS!r}, not a trained model: pass one with "
            "--opts MODEL.WEIGHTS path/to/model.pth",
            file=sys.stderr,
        )

    try:
        failed, count = (demo_images if args.input else demo_video)(args, cfg)
    except (UnsafeCheckpointError, CheckpointMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if failed:
        print(f"{failed} of {count} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def cli(argv=None):
    """The ``blendmask-demo`` command (``demo/demo.py``)."""
    setup_logger(name="fvcore")
    setup_logger()  # shows what loading the checkpoint says
    sys.exit(main(argv))


if __name__ == "__main__":
    cli()
