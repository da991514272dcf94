#!/usr/bin/env python
"""Watch AggMask*'s per-cell networks during the first training iterations.

    python tools/diagnose_aggmask.py [--config configs/Shapes/AggMask_R18.yaml] [--iters 40] [KEY VALUE ...]

Trains the config's model from its initialisation with its own optimizer, LR schedule and data
(one process, CPU unless MODEL.DEVICE says otherwise) and prints per iteration: the LR, loss_ins,
loss_cate, the whole model's gradient norm, the fraction of the positive cells' hidden units that
are alive (ReLU > 0) per hidden layer, the fraction of hidden channels that are dead for a whole
cell (never > 0 anywhere in its map), and the mean and standard deviation of the aggregated
logits. A collapse shows as the last hidden layer's dead channels going to 1 while the logits
settle on one value (every mask empty). E.g. ``MODEL.AGGMASK.WEIGHT_PRED_INIT default`` against
the shapes config's ``identity``.
"""

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "Shapes" / "AggMask_R18.yaml"))
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from blendmask import load_config
    from blendmask.data import set_num_classes
    from blendmask.engine import Trainer, register_datasets

    cfg = load_config(args.config, ["MODEL.DEVICE", "cpu"] + list(args.opts))
    if cfg.MODEL.META_ARCHITECTURE != "AggMask":
        sys.exit(f"{args.config} builds {cfg.MODEL.META_ARCHITECTURE}, not AggMask")
    register_datasets(cfg)
    set_num_classes(cfg)
    torch.manual_seed(cfg.SEED if cfg.SEED >= 0 else 0)
    model = Trainer.build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    scheduler = Trainer.build_lr_scheduler(cfg, optimizer)
    data = iter(Trainer.build_train_loader(cfg))

    seen = []
    cell_logits = model.cell_logits

    def watched(outputs, i, cells, hidden=None):
        hidden = [] if hidden is None else hidden
        out = cell_logits(outputs, i, cells, hidden=hidden)
        if model.training and len(cells):
            seen.append(([(h > 0).float().mean().item() for h in hidden],
                         [(~(h > 0).flatten(2).any(2)).float().mean().item() for h in hidden],
                         out.detach()))
        return out

    model.cell_logits = watched
    model.train()
    rows = []
    for it in range(args.iters):
        seen.clear()
        losses = model(next(data))
        optimizer.zero_grad()
        sum(losses.values()).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")).item()
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        if not seen:
            print(f"it {it:4d} no positive cell in this batch", flush=True)
            continue
        alive = torch.tensor([s[0] for s in seen]).mean(0).tolist()
        dead = torch.tensor([s[1] for s in seen]).mean(0).tolist()
        logits = torch.cat([s[2].flatten() for s in seen])
        rows.append(dead)
        print(f"it {it:4d} lr {lr:.4f} loss_ins {losses['loss_ins'].item():.3f} "
              f"loss_cate {losses['loss_cate'].item():.3f} grad norm {grad_norm:7.2f} "
              f"alive {' '.join(f'{a:.2f}' for a in alive)} dead channels {' '.join(f'{d:.2f}' for d in dead)} "
              f"logits {logits.mean().item():9.2f} +- {logits.std().item():8.2f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
