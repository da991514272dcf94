"""Install the ``blendmask`` package (projects/BlendMask/blendmask) next to detectron2.

torch, torchvision and detectron2 are not listed as requirements on purpose: users bring their own
builds (CUDA or CPU torch; detectron2 is not on PyPI), and ``make setup`` installs all three into
.venv/. Every other third-party module the package imports at run time is listed below;
tests/test_packaging.py checks that against the package's imports.

A non-editable install ships the yaml and python (LazyConfig) configs under
``blendmask/model_zoo/configs`` and three commands: ``blendmask-train``, ``blendmask-demo`` and
``blendmask-export`` (train_net.py, demo/demo.py and tools/export_model.py in the repository).
"""

from setuptools import find_packages, setup

# import name -> distribution, for every third-party module the package imports (torch, torchvision,
# detectron2 aside). opencv: the headless build, as detectron2 leaves opencv to the user; a user
# with opencv-python already installed can skip it with pip's --no-deps.
INSTALL_REQUIRES = [
    "numpy>=1.23",  # numpy
    "opencv-python-headless>=4.5,<5",  # cv2 (also detectron2.utils.visualizer)
    "Pillow>=7.1",  # PIL
    "PyYAML>=5.1",  # yaml
    "fvcore>=0.1.5",  # fvcore
    "iopath>=0.1.7",  # iopath (checkpoint downloads through detectron2's PathManager)
    "omegaconf>=2.1",  # omegaconf (LazyConfig, blendmask.lazy)
    "pycocotools>=2.0.2",  # pycocotools
    "matplotlib",
    "tqdm",  # tqdm (the demo)
]

EXTRAS_REQUIRE = {
    # ONNX export and its check (blendmask.export); TorchScript needs nothing more
    "export": ["onnx", "onnxruntime"],
}

setup(
    name="blendmask",
    version="0.1.0",
    description="BlendMask, CenterMask, SOLOv2, AggMask* and panoptic BlendMask for detectron2 "
    "(loads AdelaiDet and centermask2 checkpoints)",
    license="Apache-2.0",
    python_requires=">=3.9",
    package_dir={"": "projects/BlendMask"},
    packages=find_packages(where="projects/BlendMask"),
    package_data={"blendmask": ["model_zoo/configs/**/*.yaml", "model_zoo/configs/**/*.py"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "blendmask-train=blendmask.cli.train:cli",
            "blendmask-demo=blendmask.cli.demo:cli",
            "blendmask-export=blendmask.cli.export:cli",
            "blendmask-lazy-train=blendmask.cli.lazy_train:cli",
        ]
    },
)
