"""Mixed-precision training for CPUs and GPUs (``SOLVER.AMP.ENABLED``).

detectron2 0.6's ``AMPTrainer`` asserts CUDA at its first step. :class:`MixedPrecisionTrainer`
is the same loop on any device: the forward and the losses under ``torch.autocast`` in the dtype
``SOLVER.AMP.PRECISION`` resolves to (``auto``: bfloat16 on CPUs, float16 on CUDA), the backward
outside it. float16 gets a gradient scaler (``torch.amp.GradScaler``); bfloat16 has float32's
exponent range and needs none. Under the scaler a step whose loss or gradients are not finite is
skipped (the scale halves) with a warning instead of stopping the run; without it a non-finite
loss stops training as in detectron2 (``FloatingPointError``). The scaler state is saved in the
checkpoints (``"_trainer"`` -> ``"grad_scaler"``), so ``--resume`` continues with the same scale.
"""

import logging
import time

import torch
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm

from ..compat import next_batch, write_step_metrics
from .precision import resolve_precision

logger = logging.getLogger(__name__)

TRAINING_PRECISIONS = ("auto", "bf16", "fp16")


def training_dtype(precision: str, device_type: str) -> torch.dtype:
    """The autocast dtype of ``SOLVER.AMP.PRECISION`` on ``device_type`` (float32: no autocast,
    when a CPU has no native bfloat16/float16, with a warning)."""
    name = str(precision).lower()
    name = {"float16": "fp16", "bfloat16": "bf16"}.get(name, name)  # later detectron2's spelling
    if name not in TRAINING_PRECISIONS:
        raise ValueError(f"SOLVER.AMP.PRECISION must be one of {', '.join(TRAINING_PRECISIONS)}, got {precision!r}")
    if name == "auto":
        name = "fp16" if device_type == "cuda" else "bf16"
    return resolve_precision(name, device_type)


class MixedPrecisionTrainer(SimpleTrainer):
    """detectron2's ``SimpleTrainer`` with the forward under autocast (see the module doc)."""

    def __init__(self, model, data_loader, optimizer, precision: str = "auto"):
        super().__init__(model, data_loader, optimizer)
        param = next(model.parameters())
        self.device_type = param.device.type
        self.dtype = training_dtype(precision, self.device_type)
        self.grad_scaler = torch.amp.GradScaler(self.device_type) if self.dtype is torch.float16 else None
        self.skipped_steps = 0
        logger.info(f"mixed-precision training on {self.device_type}: {self.dtype}"
                    + (" with a gradient scaler" if self.grad_scaler is not None else ""))

    def run_step(self):
        assert self.model.training, "[MixedPrecisionTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next_batch(self)
        data_time = time.perf_counter() - start
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not torch.float32):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                losses, loss_dict = loss_dict, {"total_loss": loss_dict}
            else:
                losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        if self.grad_scaler is None:
            losses.backward()
            write_step_metrics(self, loss_dict, data_time)
            self.optimizer.step()
            return
        self.grad_scaler.scale(losses).backward()
        if self._all_finite(losses):
            write_step_metrics(self, loss_dict, data_time)
        else:  # the scaler sees inf/NaN gradients and skips the step; detectron2 would raise here
            self.skipped_steps += 1
            logger.warning(f"iteration {self.iter}: the loss is not finite under float16; step skipped, "
                           f"gradient scale {self.grad_scaler.get_scale():g} -> halved")
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    @staticmethod
    def _all_finite(losses: torch.Tensor) -> bool:
        finite = torch.isfinite(losses.detach()).to(torch.float32).reshape(1)
        if comm.get_world_size() > 1:  # every process takes the same decision
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        return bool(finite.item() > 0)

    def state_dict(self):
        state = super().state_dict()
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
