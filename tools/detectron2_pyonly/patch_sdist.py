"""Turn the extracted pb1-detectron2 0.6 sdist into a python-only build tree.

Usage: python patch_sdist.py SDIST_DIR

1. setup.py builds no extension (``ext_modules=[]``), no cmdclass, and names the distribution
   ``detectron2`` (the sdist says ``pb1-detectron2``).
2. ``detectron2/model_zoo/configs`` moves to a top-level ``configs/`` (setup.py copies it back
   into the wheel from there; without this the wheel ships no model-zoo configs).
3. Our placeholder ``detectron2/_C.py`` is added.
"""

import re
import shutil
import sys
from pathlib import Path


def patch(src: Path) -> None:
    setup_py = src / "setup.py"
    text = setup_py.read_text()
    text, n_ext = re.subn(r"ext_modules\s*=\s*get_extensions\(\)", "ext_modules=[]", text)
    text, n_cmd = re.subn(r"cmdclass\s*=\s*\{[^}]*\}", "cmdclass={}", text)
    # publish under detectron2's own distribution name, as a source build would
    text, n_name = re.subn(r'name="pb1-detectron2"', 'name="detectron2"', text)
    if (n_ext, n_cmd, n_name) != (1, 1, 1):
        raise SystemExit(f"unexpected setup.py layout in {setup_py} ({n_ext}, {n_cmd}, {n_name})")
    setup_py.write_text(text)

    zoo_configs = src / "detectron2" / "model_zoo" / "configs"
    top_configs = src / "configs"
    if zoo_configs.is_dir() and not top_configs.exists():
        shutil.move(str(zoo_configs), str(top_configs))

    shutil.copy(Path(__file__).with_name("_C.py"), src / "detectron2" / "_C.py")


if __name__ == "__main__":
    patch(Path(sys.argv[1]))
