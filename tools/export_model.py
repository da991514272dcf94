#!/usr/bin/env python
"""Export a model of the package, post-processing included, to ONNX and/or TorchScript: the
``blendmask-export`` command (``blendmask.cli.export``)::

    python tools/export_model.py --config-file configs/BlendMask/R_50_1x.yaml \\
        --weights model.pth --output export/ --format onnx torchscript \\
        --sample-image img.jpg [more.jpg ...] [--verify] [--benchmark 10]
"""

from blendmask.cli.export import FORMATS, cli, latency_ms, main, matches, parse_args, setup_cfg  # noqa: F401

if __name__ == "__main__":
    cli()
