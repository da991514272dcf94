"""Print which detectron2 this Python imports: "missing", or "<compiled|python-only> <version> <folder>".

tools/setup_env.sh keeps whatever this finds (unless BLENDMASK_REPLACE_DETECTRON2=1) and installs the
python-only 0.6 build only when it prints "missing". Python-only: detectron2 without its compiled
ops, either without ``detectron2._C`` or with the placeholder module our 0.6 build ships.
"""

import importlib.util
import os


def which_detectron2() -> str:
    if importlib.util.find_spec("detectron2") is None:
        return "missing"
    try:
        import detectron2
    except Exception as e:  # a broken install counts as missing: setup installs over it
        return f"missing (import failed: {type(e).__name__})"
    try:
        import detectron2._C as ops

        kind = "python-only" if getattr(ops, "IS_PLACEHOLDER", False) else "compiled"
    except ImportError:
        kind = "python-only"
    return f"{kind} {getattr(detectron2, '__version__', 'unknown')} {os.path.dirname(detectron2.__file__)}"


if __name__ == "__main__":
    print(which_detectron2())
