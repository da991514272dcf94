"""Placeholder for detectron2's compiled extension (python-only install made by blendmask).

Importing it works, so ``import detectron2.layers`` and friends succeed. Every compiled op is a
callable that raises a NotImplementedError naming the op. Installed by ``tools/setup_env.sh``.
"""

import torch

IS_PLACEHOLDER = True

_MESSAGE = (
    "detectron2._C.{op} is not available: this is a python-only detectron2 install "
    "(built by blendmask's tools/setup_env.sh without the C++/CUDA ops). "
    "Use a pure-PyTorch alternative or build detectron2 from source."
)


def get_compiler_version():
    return "none (python-only detectron2 build)"


def get_cuda_version():
    return torch.version.cuda or "none"


def has_cuda():
    return False


def _missing_op(name):
    def op(*args, **kwargs):
        raise NotImplementedError(_MESSAGE.format(op=name))

    op.__name__ = name
    op.__qualname__ = name
    return op


def __getattr__(name):
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)
    return _missing_op(name)
