#!/usr/bin/env python
"""Print how far our models are from their reference implementations on the shared fixtures.

    python tools/compare_reference.py [REFERENCE ...] [--nchw]

REFERENCE is one or more of (default: every one whose fixture is present in ../shared/reference):

``adelaidet``    BlendMask, FCOS and the RT variant against AdelaiDet   (tools/compare_adelaidet.py)
``centermask2``  CenterMask V-39 against centermask2                    (tools/compare_centermask.py)
``solov2``       SOLOv2 against AdelaiDet's SOLOv2                      (tools/compare_solov2.py)
``aggmask``      AggMask* against the authors' head                     (tools/compare_aggmask.py)
``panoptic``     Panoptic BlendMask against AdelaiDet                   (tools/compare_panoptic.py)

Each comparison prints its measured differences (the test suite checks the same quantities
against the same tolerances). ``--nchw`` runs inference in the references' NCHW memory format
(``TEST.CHANNELS_LAST_ON_CPU False``) where a comparison supports it. Exits non-zero when any
comparison reports a difference beyond tolerance.
"""

import argparse
import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "reference"

# reference name -> (tools module, fixture folder that must exist, takes --nchw)
REFERENCES = {
    "adelaidet": ("compare_adelaidet", SHARED / "adelaidet", True),
    "centermask2": ("compare_centermask", SHARED / "centermask2", True),
    "solov2": ("compare_solov2", SHARED / "solov2", True),
    "aggmask": ("compare_aggmask", SHARED / "aggmask", False),
    "panoptic": ("compare_panoptic", SHARED / "adelaidet" / "panoptic", True),
}


def run_comparison(compare, description: str, argv=None) -> int:
    """The command line of a comparison that takes ``--nchw``: ``compare(nchw) -> exit status``,
    with tests/ importable (the fixtures) and 2 torch threads."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nchw", action="store_true", help="TEST.CHANNELS_LAST_ON_CPU False")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    import torch

    torch.set_num_threads(2)
    return compare(args.nchw)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("references", nargs="*", metavar="REFERENCE",
                        help=f"any of {', '.join(REFERENCES)} (default: all present)")
    parser.add_argument("--nchw", action="store_true", help="TEST.CHANNELS_LAST_ON_CPU False")
    args = parser.parse_args(argv)
    names = list(args.references or [])
    unknown = [n for n in names if n not in REFERENCES]
    if unknown:
        parser.error(f"unknown reference {', '.join(unknown)}; choose from {', '.join(REFERENCES)}")
    sys.path.insert(0, str(REPO / "tools"))
    status = 0
    for name in names or REFERENCES:
        module_name, folder, takes_nchw = REFERENCES[name]
        if not folder.is_dir() or not (REPO / "tools" / f"{module_name}.py").exists():
            if names:
                print(f"{name}: cannot compare: {folder} or tools/{module_name}.py is missing", flush=True)
                status = 2
            continue
        print(f"== {name} ==", flush=True)
        rc = importlib.import_module(module_name).main(["--nchw"] if args.nchw and takes_nchw else [])
        status = max(status, int(rc or 0))
    return status


if __name__ == "__main__":
    sys.exit(main())
