"""blendmask.compat: each reach into detectron2 beyond its public API, checked against the
installed detectron2 (0.6 or main), so a detectron2 release that moves one fails here, by name."""

import pytest
from detectron2.engine import HookBase, PeriodicWriter, TrainerBase
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter

from blendmask import compat
from blendmask.utils.env import detectron2_has_compiled_ops


def test_coco_evaluator_fast_path_uses_the_official_coco_eval_without_compiled_ops():
    from detectron2.evaluation import coco_evaluation
    from pycocotools.cocoeval import COCOeval

    switched = compat.use_official_coco_eval_without_compiled_ops()  # imported blendmask already ran it
    assert switched == (not detectron2_has_compiled_ops())
    assert (coco_evaluation.COCOeval_opt is COCOeval) == switched


def test_replace_create_ddp_model_is_undone_even_on_error():
    import detectron2.engine.defaults as defaults

    theirs = defaults.create_ddp_model

    def ours(model, **kwargs):
        return model

    with pytest.raises(RuntimeError):
        with compat.replace_create_ddp_model(ours):
            assert defaults.create_ddp_model is ours
            raise RuntimeError("a failing trainer constructor")
    assert defaults.create_ddp_model is theirs


def test_set_local_process_group_0_6_sets_what_comm_reads():
    saved = comm._LOCAL_PROCESS_GROUP
    sentinel = object()
    try:
        compat.set_local_process_group_0_6(sentinel)
        assert comm._LOCAL_PROCESS_GROUP is sentinel
    finally:
        comm._LOCAL_PROCESS_GROUP = saved


class _Recorder(HookBase):
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def before_step(self):
        self.calls.append(self.name)


class _NoOpTrainer(TrainerBase):
    def run_step(self):
        pass


def test_insert_first_hook_runs_it_before_the_registered_ones():
    calls = []
    trainer = _NoOpTrainer()
    trainer.register_hooks([_Recorder("a", calls), _Recorder("b", calls)])
    compat.insert_first_hook(trainer, _Recorder("first", calls))
    trainer.train(0, 1)
    assert calls == ["first", "a", "b"]


def test_set_metric_printers_max_iter_changes_the_printers_eta_horizon():
    trainer = _NoOpTrainer()
    printer = CommonMetricPrinter(max_iter=10)
    trainer.register_hooks([PeriodicWriter([printer])])
    assert compat.set_metric_printers_max_iter(trainer, 500) == 1
    assert printer._max_iter == 500


def test_training_loop_access_and_replacement_on_a_default_trainer(tmp_path):
    from detectron2.engine import DefaultTrainer, SimpleTrainer

    from blendmask import get_cfg

    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path), "DATASETS.TRAIN", "('coco_2017_val',)"])

    class NoData(DefaultTrainer):  # only the attributes, no dataset
        @classmethod
        def build_train_loader(cls, cfg):
            return [[]]

    trainer = NoData(cfg)
    loop = compat.training_loop_of(trainer)
    assert isinstance(loop, SimpleTrainer) and loop.model is trainer.model
    replacement = SimpleTrainer(loop.model, [[{"batch": 1}]], loop.optimizer)
    compat.replace_training_loop(trainer, replacement)
    assert compat.training_loop_of(trainer) is replacement
    assert compat.next_batch(replacement) == [{"batch": 1}]


def test_write_step_metrics_puts_the_losses_in_the_event_storage():
    import torch
    from detectron2.engine import SimpleTrainer
    from detectron2.utils.events import EventStorage

    model = torch.nn.Linear(1, 1)
    loop = SimpleTrainer(model, [[]], torch.optim.SGD(model.parameters(), lr=0.1))
    with EventStorage() as storage:
        compat.write_step_metrics(loop, {"loss_a": torch.tensor(0.5), "loss_b": torch.tensor(0.25)}, 0.01)
        assert storage.latest()["total_loss"][0] == 0.75 and storage.latest()["loss_a"][0] == 0.5
