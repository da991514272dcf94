"""A few SGD steps of a tiny model on fixed data, in however many processes ``launch`` starts:
what tests/test_distributed.py compares between 1 process x 4 images and 2 processes x 2 images.

Functions here run in spawned processes, so they live in an importable module, not in the test."""

import torch

from conftest import square_instances, tiny_cfg

NUM_IMAGES = 4
IMAGE_SIZE = 64
# every image the same size: detectron2's NaiveSyncBatchNorm averages the processes' statistics
# with equal weights, which equals the statistics of the whole batch only for equal (N, H, W)
BOXES = (
    ((4, 6, 40, 44), (30, 20, 60, 58)),
    ((10, 10, 54, 30),),
    ((2, 30, 22, 62), (24, 4, 62, 40), (40, 44, 60, 60)),
    ((8, 8, 56, 56),),
)
CLASSES = ((1, 3), (0,), (4, 2, 1), (3,))


def fixed_inputs():
    generator = torch.Generator().manual_seed(7)
    return [{"image": torch.rand(3, IMAGE_SIZE, IMAGE_SIZE, generator=generator) * 255,
             "instances": square_instances(IMAGE_SIZE, IMAGE_SIZE, boxes, classes)}
            for boxes, classes in zip(BOXES, CLASSES)]


def config(meta_arch: str):
    cfg = tiny_cfg(meta_arch)
    if meta_arch == "BlendMask":
        assert cfg.MODEL.BASIS_MODULE.NORM == "SyncBN"  # the default, which must be synchronised
    return cfg


def train_steps(meta_archs, steps: int, out_dir: str):
    """:func:`train_model_steps` for each of ``meta_archs`` (one process start for all)."""
    for meta_arch in meta_archs:
        train_model_steps(meta_arch, steps, f"{out_dir}/{meta_arch}.pt")


def train_model_steps(meta_arch: str, steps: int, out_file: str):
    """Build the model with seed 0, wrap it for this process count, run ``steps`` SGD steps on this
    process's share of :func:`fixed_inputs`; rank 0 saves the loss dicts of every step (averaged
    over processes, as detectron2 logs them), the final state dict and the norm layers' types."""
    import detectron2.utils.comm as comm
    import torch.distributed as dist
    from detectron2.modeling import build_model

    from blendmask.engine.launch import create_ddp_model

    world, rank = comm.get_world_size(), comm.get_rank()
    torch.manual_seed(0)
    model = build_model(config(meta_arch)).train()
    wrapped = create_ddp_model(model, broadcast_buffers=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    share = NUM_IMAGES // world
    mine = fixed_inputs()[rank * share:(rank + 1) * share]
    history = []
    for _ in range(steps):
        losses = wrapped(mine)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        names = sorted(losses)
        values = torch.stack([losses[k].detach() for k in names])
        if world > 1:
            dist.all_reduce(values)
            values /= world
        history.append(dict(zip(names, values.tolist())))
    if rank == 0:
        torch.save({"history": history, "state": {k: v.clone() for k, v in model.state_dict().items()},
                    "norms": sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__})},
                   out_file)
