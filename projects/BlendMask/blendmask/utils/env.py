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
