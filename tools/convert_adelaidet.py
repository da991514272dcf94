#!/usr/bin/env python
"""Convert an AdelaiDet BlendMask/FCOS checkpoint into a clean weights-only file for blendmask.

    python tools/convert_adelaidet.py IN.pth OUT.pth [--config-file configs/BlendMask/R_50_1x.yaml]

Keeps only the model weights (drops optimizer/scheduler state), applies the conversions of
``blendmask.checkpoint`` and, with ``--config-file``, checks that every model key is set and no
key is left over. The input is read with ``torch.load(weights_only=True)``; a file that needs
pickled Python objects is refused unless ``--allow-pickle`` is given (only for files you trust).
"""

import argparse
import sys

import torch


def load_untrusted(path: str, allow_pickle: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError or RuntimeError depending on content
        if not allow_pickle:
            raise SystemExit(
                f"{path} holds pickled Python objects, not only tensors ({type(e).__name__}: {e}).\n"
                "Loading it can run arbitrary code. If you trust the file, rerun with --allow-pickle."
            ) from None
        return torch.load(path, map_location="cpu", weights_only=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--config-file", help="check the result against the model this config builds")
    parser.add_argument("--allow-pickle", action="store_true", help="load files that contain pickled objects")
    args = parser.parse_args(argv)

    from blendmask.checkpoint import convert_adelaidet_state_dict

    checkpoint = load_untrusted(args.input, args.allow_pickle)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise SystemExit(f"{args.input}: expected a state dict or {{'model': state_dict}}, got {type(checkpoint)}")
    model_keys = None
    if args.config_file:
        from detectron2.modeling import build_model

        from blendmask import get_cfg

        cfg = get_cfg()  # every model's keys (BlendMask, FCOS, SOLOv2, ...)
        cfg.merge_from_file(args.config_file)
        cfg.MODEL.DEVICE = "cpu"
        model_state = build_model(cfg).state_dict()
        model_keys = model_state.keys()
    converted, notes = convert_adelaidet_state_dict(state, model_keys)
    for note in notes:
        print("note:", note)
    if model_keys is not None:
        missing = sorted(set(model_keys) - set(converted))
        unexpected = sorted(set(converted) - set(model_keys))
        wrong_shape = sorted(k for k in set(model_keys) & set(converted)
                             if tuple(converted[k].shape) != tuple(model_state[k].shape))
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong_shape)):
            if keys:
                print(f"{label} ({len(keys)}): {', '.join(keys[:10])}{' ...' if len(keys) > 10 else ''}")
        if missing or unexpected or wrong_shape:
            print("the checkpoint does not match the config's model", file=sys.stderr)
            return 1
    torch.save({"model": converted, "__author__": "AdelaiDet, converted by blendmask"}, args.output)
    print(f"wrote {len(converted)} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
