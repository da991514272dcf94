#!/usr/bin/env python
"""Draw what a model of the package finds in images, a video or a webcam: the ``blendmask-demo``
command (``blendmask.cli.demo``)::

    python demo/demo.py --config-file configs/BlendMask/R_50_1x.yaml --input photos/ 'more/*.jpg' \\
        --output drawn/ --opts MODEL.WEIGHTS blendmask_R_50_1x.pth
"""

from blendmask.cli.demo import (  # noqa: F401  (the names demo/demo.py always had)
    DEFAULT_CONFIG,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    cli,
    find_images,
    get_parser,
    image_outputs,
    main,
    run_on_images,
    run_on_video,
    setup_cfg,
)

if __name__ == "__main__":
    cli()
