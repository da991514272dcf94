"""Facts about the installed detectron2 that change what we can use."""

import functools


@functools.cache
def detectron2_has_compiled_ops() -> bool:
    """True when ``detectron2._C`` is the real compiled extension, False for our placeholder.

    The placeholder (installed by ``tools/setup_env.sh``) sets ``IS_PLACEHOLDER = True``; a
    ``_C`` that fails to import counts as missing.
    """
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "IS_PLACEHOLDER", False)


def quiet_startup() -> None:
    """Silence start-up messages a user of the command-line tools cannot act on: torch's "No CUDA
    runtime is found, using CUDA_HOME=..." (printed when detectron2 collects its environment
    report on a machine without CUDA; it concerns compiling CUDA extensions, which this project
    never does). Called by train_net.py, demo/demo.py and tools/export_model.py."""
    import logging

    import torch

    if not torch.cuda.is_available():
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
