"""Install the ``blendmask`` package (projects/BlendMask/blendmask) next to detectron2.

torch, torchvision and detectron2 are not listed as requirements on purpose: users bring their
own (detectron2 is not on PyPI); ``make setup`` installs all of them into .venv/.
"""

from setuptools import find_packages, setup

setup(
    name="blendmask",
    version="0.1.0",
    description="BlendMask instance segmentation for detectron2 (loads AdelaiDet checkpoints)",
    license="Apache-2.0",
    python_requires=">=3.9",
    package_dir={"": "projects/BlendMask"},
    packages=find_packages(where="projects/BlendMask"),
    install_requires=["fvcore", "pycocotools", "matplotlib", "tqdm"],
)
