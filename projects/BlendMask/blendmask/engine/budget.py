"""Training for a wall-clock budget instead of a number of iterations.

Comparing models at equal iterations favours the slow ones; a practitioner with M minutes of
machine time trains each model for M minutes. :class:`BudgetTrainer` does that:

- :class:`TrainingClock` counts the seconds spent in training steps (data loading, forward,
  backward, update), not in evaluations or checkpoint writes, so measuring a learning curve does
  not eat the budget;
- the learning rate follows the config's schedule in *time*: warm-up over the fraction
  ``SOLVER.WARMUP_ITERS / SOLVER.MAX_ITER`` of the budget, then ``SOLVER.GAMMA`` at each fraction
  ``SOLVER.STEPS / SOLVER.MAX_ITER`` (a 1400-iteration config with 100 warm-up iterations and steps
  at 1000 and 1250 warms up over 7% of the minutes and decays at 71% and 89%), so a slow model's
  few iterations are not spent warming up; but the warm-up also lasts ``WARMUP_ITERS``
  iterations (at most half the budget), so a short budget does not reach the full learning rate
  after a handful of steps;
- training stops after the step that spends the budget and saves ``model_final.pth``;
- :class:`CurveHook` evaluates at evenly spaced fractions of the budget (AP against minutes).
"""

import logging
import time
from typing import Callable, List, Optional

from detectron2.engine import HookBase
from torch.optim.lr_scheduler import LambdaLR

from ..compat import insert_first_hook, set_metric_printers_max_iter
from .trainer import Trainer

logger = logging.getLogger(__name__)


class BudgetSpent(BaseException):
    """Raised by :class:`TimeBudgetHook` to leave detectron2's training loop (a BaseException, so the
    loop's ``except Exception`` does not log it as a crash; its ``finally`` still runs the hooks'
    ``after_train``)."""


class TrainingClock:
    """Seconds of training steps, against a budget of ``budget_s`` seconds (none by default)."""

    def __init__(self, budget_s: float = float("inf"), now: Callable[[], float] = time.perf_counter):
        if not budget_s > 0:
            raise ValueError(f"the training budget must be positive, got {budget_s} s")
        self.budget_s = float(budget_s)
        self.now = now
        self.spent_s = 0.0
        self._started: Optional[float] = None

    def start(self) -> None:
        self._started = self.now()

    def stop(self) -> None:
        if self._started is not None:
            self.spent_s += self.now() - self._started
            self._started = None

    @property
    def fraction(self) -> float:
        return self.spent_s / self.budget_s


class TimeBudgetHook(HookBase):
    """Times each step on a :class:`TrainingClock`; raises :class:`BudgetSpent` once it is spent.
    Must be the first hook, so the later hooks' ``after_step`` (evaluation, checkpoints, metric
    writers) happens outside the timed interval."""

    def __init__(self, clock: TrainingClock):
        self.clock = clock
        self.iterations = 0

    def before_step(self):
        self.clock.start()

    def after_step(self):
        self.clock.stop()
        self.iterations += 1
        if self.clock.fraction >= 1.0:
            raise BudgetSpent()


# At short budgets the warm-up fraction of the minutes holds few iterations of a slow model (Mask
# R-CNN: 19 iterations of the 100 its config warms up over in 4 minutes, then it diverged at a 0.02
# learning rate). The warm-up therefore also lasts the config's WARMUP_ITERS iterations, but never
# more than this fraction of the budget.
MAX_WARMUP_FRACTION = 0.5


def budget_lr_factor(cfg, clock: TrainingClock) -> Callable[[int], float]:
    """The learning-rate multiplier of iteration ``iteration`` (counted by the scheduler): the
    config's schedule with time in place of iterations: ``GAMMA`` per passed fraction ``STEPS /
    MAX_ITER`` of the budget; a warm-up that ends once both the fraction ``WARMUP_ITERS /
    MAX_ITER`` of the budget and ``WARMUP_ITERS`` iterations have passed, or at the latest at
    ``MAX_WARMUP_FRACTION`` of the budget."""
    solver = cfg.SOLVER
    fractions = sorted(s / solver.MAX_ITER for s in solver.STEPS)
    warmup, warmup_factor = solver.WARMUP_ITERS / solver.MAX_ITER, solver.WARMUP_FACTOR
    warmup_iters = solver.WARMUP_ITERS
    if solver.WARMUP_METHOD not in ("linear", "constant"):
        raise ValueError(f"SOLVER.WARMUP_METHOD {solver.WARMUP_METHOD!r}: the budget schedule knows linear, constant")

    def factor(iteration: int) -> float:
        done = clock.fraction
        decay = solver.GAMMA ** sum(done >= f for f in fractions)
        if warmup_iters <= 0:
            return decay
        by_time = done / warmup if warmup > 0 else 1.0
        alpha = max(min(by_time, iteration / warmup_iters), done / MAX_WARMUP_FRACTION)
        if alpha >= 1:
            return decay
        if solver.WARMUP_METHOD == "constant":
            return decay * warmup_factor
        return decay * (warmup_factor * (1 - alpha) + alpha)

    return factor


class CurveHook(HookBase):
    """Evaluates ``evaluate(model) -> results`` whenever training passes the next of ``points``
    evenly spaced fractions of itself (the last one, 1.0, is left to the caller, after training).
    ``progress()``: the fraction done, by default the clock's fraction of its budget (pass the
    iteration's fraction to train for a number of iterations). ``rows``: dicts with "minutes" (of
    the clock), "iteration" and the results."""

    def __init__(self, clock: TrainingClock, evaluate: Callable, points: int,
                 progress: Optional[Callable[[], float]] = None):
        self.clock = clock
        self.evaluate = evaluate
        self.progress = progress or (lambda: clock.fraction)
        self.fractions = [i / points for i in range(1, points)] if points > 1 else []
        self.rows: List[dict] = []

    def after_step(self):
        done = self.progress()
        if self.fractions and done >= self.fractions[0]:
            while self.fractions and done >= self.fractions[0]:
                self.fractions.pop(0)
            self.rows.append(
                {"minutes": self.clock.spent_s / 60, "iteration": self.trainer.iter + 1,
                 **self.evaluate(self.trainer.model)}
            )


class _EtaHook(HookBase):
    """Keeps the ETA that detectron2's CommonMetricPrinter logs honest: its max_iter becomes the
    number of iterations the budget is expected to allow at the speed so far."""

    def __init__(self, clock: TrainingClock):
        self.clock = clock

    def after_step(self):
        if self.clock.fraction <= 0:
            return
        set_metric_printers_max_iter(self.trainer, int((self.trainer.iter + 1) / min(self.clock.fraction, 1.0)))


class BudgetTrainer(Trainer):
    """:class:`blendmask.engine.Trainer` for ``budget_s`` seconds of training steps.

    ``evaluate(model) -> dict`` and ``curve_points`` > 1 record a learning curve in ``curve.rows``.
    ``train()`` returns after the budget is spent, with ``model_final.pth`` saved; ``iterations``
    is how many steps ran. ``clock``: a :class:`TrainingClock` to use instead of a new one
    (tests pass one with a fake time source).
    """

    def __init__(self, cfg, budget_s: float, evaluate: Optional[Callable] = None, curve_points: int = 0,
                 clock: Optional[TrainingClock] = None):
        self.clock = clock or TrainingClock(budget_s)
        self.budget_hook = TimeBudgetHook(self.clock)
        self.curve = CurveHook(self.clock, evaluate, curve_points if evaluate else 0)
        self._lr_factor = budget_lr_factor(cfg, self.clock)  # the schedule's fractions of the config as given
        cfg = cfg.clone()
        cfg.defrost()
        cfg.SOLVER.MAX_ITER = 10**9  # the clock ends training
        cfg.freeze()
        super().__init__(cfg)

    def build_lr_scheduler(self, cfg, optimizer):
        return LambdaLR(optimizer, self._lr_factor)

    def build_hooks(self):
        return [self.budget_hook, *super().build_hooks(), self.curve, _EtaHook(self.clock)]

    @property
    def iterations(self) -> int:
        return self.budget_hook.iterations

    def train(self):
        try:
            super().train()
        except BudgetSpent:
            pass
        self.checkpointer.save("model_final")
        logger.info(f"training budget of {self.clock.budget_s / 60:.1f} min spent after {self.iterations} "
                    f"iterations ({self.clock.spent_s / max(self.iterations, 1):.3f} s/iter)")


def time_and_curve(trainer, evaluate: Optional[Callable] = None, curve_points: int = 0):
    """For a trainer that runs a number of iterations (``cfg.SOLVER.MAX_ITER``): add a
    :class:`TrainingClock` (first hook, so it times the steps only) and a :class:`CurveHook` at
    fractions of the iterations. Returns (clock, curve hook)."""
    clock = TrainingClock()
    timer = TimeBudgetHook(clock)
    max_iter = trainer.max_iter
    curve = CurveHook(clock, evaluate, curve_points if evaluate else 0,
                      progress=lambda: (trainer.iter + 1) / max_iter)
    trainer.register_hooks([curve])
    insert_first_hook(trainer, timer)
    return clock, curve
