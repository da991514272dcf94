"""Several training processes, on CPUs or GPUs, on one machine or many, with torch.distributed.

detectron2 0.6's ``launch`` requires CUDA and always asks for NCCL, and its ``create_ddp_model``
gives DistributedDataParallel a ``device_ids`` that a CPU model refuses. This module does the
same jobs for both kinds of device and for detectron2 0.6 and later:

- :func:`launch` starts ``num_processes`` copies of a function per machine (torch.multiprocessing),
  or, when the script runs under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set), joins
  the process group torchrun describes and calls the function once.
- every process uses NCCL and its own GPU when there are enough GPUs, gloo otherwise or when
  the model runs on the CPU (``MODEL.DEVICE cpu``; or the backend named by
  ``BLENDMASK_DIST_BACKEND``); detectron2's per-machine process group is set up
  so ``comm.get_local_rank()``/``get_local_size()`` work; each process runs
  ``cores // processes on this machine`` CPU threads (``BLENDMASK_THREADS_PER_PROCESS`` overrides).
- :func:`create_ddp_model` wraps a model in DistributedDataParallel with ``device_ids`` only for
  a GPU model, after turning ``nn.SyncBatchNorm`` layers of a CPU model into detectron2's
  ``NaiveSyncBatchNorm`` (which synchronises its statistics over any backend).
"""

import logging
import os
import socket
from datetime import timedelta
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from ..compat import set_local_process_group_0_6

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher following its conventions) started this process."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def choose_backend(processes_on_this_machine: int, device: Optional[str] = None) -> str:
    """"gloo" for a CPU model (``device`` "cpu", the config's MODEL.DEVICE) even where GPUs exist;
    otherwise "nccl" when every process of this machine can have its own GPU, else "gloo".
    ``BLENDMASK_DIST_BACKEND`` wins when set."""
    chosen = os.environ.get("BLENDMASK_DIST_BACKEND")
    if chosen:
        return chosen
    if device is not None and str(device).split(":")[0] == "cpu":
        return "gloo"
    if torch.cuda.is_available() and torch.cuda.device_count() >= processes_on_this_machine:
        return "nccl"
    return "gloo"


def threads_per_process(processes_on_this_machine: int) -> int:
    """The CPU cores this process may use, shared evenly by the processes of this machine."""
    chosen = os.environ.get("BLENDMASK_THREADS_PER_PROCESS")
    if chosen:
        return max(1, int(chosen))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, processes_on_this_machine))


def free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(main_func: Callable, num_processes: int = 1, num_machines: int = 1, machine_rank: int = 0,
           dist_url: Optional[str] = "auto", args=(), timeout: timedelta = DEFAULT_TIMEOUT,
           device: Optional[str] = None):
    """Run ``main_func(*args)`` in every process of a distributed job and return what it returns
    in this process (None in the parent of spawned processes).

    ``num_processes`` per machine (``--num-gpus``; on a CPU machine they share its cores),
    ``num_machines``, this machine's ``machine_rank`` and ``dist_url`` ("tcp://HOST:PORT" of machine
    0, reachable by all; "auto" picks a free local port on a single machine) mean what they mean for
    detectron2's ``launch``. Under torchrun these arguments are ignored: torchrun's environment
    variables say who is who. ``device``: the model's (MODEL.DEVICE); "cpu" means gloo and no
    GPU per process, whatever GPUs the machine has.
    """
    if launched_by_torchrun():
        world_size = int(os.environ["WORLD_SIZE"])
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        if world_size == 1:
            torch.set_num_threads(threads_per_process(1))
            return main_func(*args)
        _join(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), local_size, world_size,
              "env://", timeout, device)
        return _run_then_leave(main_func, args)
    world_size = num_processes * num_machines
    if world_size == 1:
        return main_func(*args)
    if dist_url in (None, "auto"):
        if num_machines > 1:
            raise ValueError("several machines need --dist-url tcp://HOST:PORT of machine 0")
        dist_url = f"tcp://127.0.0.1:{free_local_port()}"
    mp.spawn(_spawned_worker, nprocs=num_processes, daemon=False,
             args=(main_func, num_processes, world_size, machine_rank, dist_url, args, timeout, device))
    return None


def _spawned_worker(local_rank, main_func, num_processes, world_size, machine_rank, dist_url, args, timeout,
                    device=None):
    _join(machine_rank * num_processes + local_rank, local_rank, num_processes, world_size, dist_url, timeout,
          device)
    _run_then_leave(main_func, args)


def _join(rank: int, local_rank: int, local_size: int, world_size: int, init_method: str, timeout,
          device: Optional[str] = None):
    backend = choose_backend(local_size, device)
    torch.set_num_threads(threads_per_process(local_size))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, init_method=init_method, world_size=world_size, rank=rank,
                            timeout=timeout)
    set_local_process_group(local_size)
    comm.synchronize()


def _run_then_leave(main_func, args):
    try:
        return main_func(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def set_local_process_group(local_size: int) -> None:
    """Give detectron2's ``comm`` the group of the processes on this machine (every process must
    call this; machines have ``local_size`` processes each, ranks numbered machine by machine)."""
    if hasattr(comm, "create_local_process_group"):  # detectron2 after 0.6
        comm.create_local_process_group(local_size)
        return
    world_size, rank = dist.get_world_size(), dist.get_rank()
    for machine in range(world_size // local_size):
        group = dist.new_group(list(range(machine * local_size, (machine + 1) * local_size)))
        if machine == rank // local_size:
            set_local_process_group_0_6(group)


def create_ddp_model(model: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """``model`` itself in a single process; else ``DistributedDataParallel(model, **kwargs)`` (plus
    detectron2's ``fp16_compression`` option) with
    ``device_ids=[local rank]`` for a GPU model and none for a CPU model, whose ``nn.SyncBatchNorm``
    layers become ``NaiveSyncBatchNorm`` first (same parameter objects, so an optimizer built
    before keeps working)."""
    fp16_compression = kwargs.pop("fp16_compression", False)  # detectron2's create_ddp_model option
    if comm.get_world_size() == 1:
        return model
    first = next(model.parameters(), None)
    on_gpu = first is not None and first.device.type == "cuda"
    if on_gpu:
        kwargs.setdefault("device_ids", [comm.get_local_rank()])
    else:
        from ..modeling.layers.norms import syncbn_to_naive_syncbn

        syncbn_to_naive_syncbn(model)
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression:  # gradients all-reduced in float16, as detectron2's option does
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        ddp.register_comm_hook(state=None, hook=default_hooks.fp16_compress_hook)
    return ddp
