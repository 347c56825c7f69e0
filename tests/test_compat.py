"""training.run.compat: a checkpoint's stored config, read in today's terms and compared flag by flag with a run's;
and what happens to a checkpoint that stores none."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import compose
from training.run.checkpoints import CheckpointError
from training.run.compat import COMPARED, flag_differences, upgraded_config
from training.run.execute import train

NETWORK_FLAGS = COMPARED["fine-tune"]
TRAINING_FLAGS = COMPARED["resume"]


def stored(overrides: list[str], drop: tuple[str, ...] = (), **legacy: object) -> dict:
    """The config a checkpoint would store for ``overrides``, without the flags in ``drop`` (written before they
    existed) and with ``legacy`` values set (``"a.b": value``, spellings of their time)."""
    config = OmegaConf.to_container(compose(overrides), resolve=True)
    for flag in drop:
        *parents, key = flag.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        del node[key]
    cfg = OmegaConf.create(config)
    for flag, value in legacy.items():
        OmegaConf.update(cfg, flag.replace("__", "."), value)
    return OmegaConf.to_container(cfg)


def test_the_sentinels_of_older_checkpoints_read_as_unset_but_not_those_of_the_command_line():
    old = stored([], dataset__params__seq_length=0, net__embedding_dim=0)
    upgraded = upgraded_config(old)
    assert upgraded.dataset.params.seq_length is None and upgraded.net.embedding_dim is None
    assert flag_differences(compose([]), old, ("dataset.params.seq_length", "net.embedding_dim")) == []
    # Today's command line means what it says: 80 samples per signal is not the checkpoint's unset length.
    here = compose(["dataset.params.seq_length=80"])
    assert flag_differences(here, old, ("dataset.params.seq_length",)) == [
        "dataset.params.seq_length=80 (checkpoint: None)"
    ]


def test_the_original_and_todays_spellings_of_one_network_compare_equal():
    old = stored(["net.type=ResNet", "net.block_width_factors=[0.0]"])
    assert flag_differences(compose([]), old, NETWORK_FLAGS) == []
    assert flag_differences(compose(["net.block_width_factors=[[2.0,2]]"]), old, ("net.block_width_factors",)) == [
        "net.block_width_factors=[[2.0, 2]] (checkpoint: [0.0])"
    ]


def test_an_average_written_before_its_warm_up_existed_resumes_only_without_it():
    old = stored(["train.ema=0.9"], drop=("train.ema_warmup",))
    assert upgraded_config(old).train.ema_warmup is False  # its decays were train.ema from the first update
    assert flag_differences(compose(["train.ema=0.9"]), old, TRAINING_FLAGS) == [
        "train.ema_warmup=True (checkpoint: False)"
    ]
    assert flag_differences(compose(["train.ema=0.9", "train.ema_warmup=False"]), old, TRAINING_FLAGS) == []


def test_a_run_written_before_the_checkpoint_choice_existed_resumes_evaluating_its_best_checkpoint():
    old = stored([], drop=("test.checkpoint",))
    assert upgraded_config(old).test.checkpoint == "best"  # all runs evaluated best.ckpt then
    assert flag_differences(compose([]), old, TRAINING_FLAGS) == ["test.checkpoint='last' (checkpoint: 'best')"]
    assert flag_differences(compose(["test.checkpoint=best"]), old, TRAINING_FLAGS) == []


def test_a_checkpoint_of_the_time_when_init_spatial_value_was_always_set_reads_as_unset():
    old = stored(["conv.type=CKConv"], kernel__init_spatial_value=1.0)  # then the default, passed to every net
    assert flag_differences(compose(["conv.type=CKConv"]), old, TRAINING_FLAGS) == []


def test_the_warm_up_of_no_average_is_no_difference():
    old = stored([], drop=("train.ema_warmup",))  # an older run without an average
    assert flag_differences(compose([]), old, TRAINING_FLAGS) == []


def test_a_checkpoint_without_a_stored_config_is_used_only_when_told_its_flags_are_unchecked(tiny, tmp_path):
    trained = train(compose(tiny))
    checkpoint = torch.load(trained["checkpoint"], weights_only=False)
    del checkpoint["ccnn_config"]  # written by other code: its flags cannot be compared
    foreign = tmp_path / "foreign.ckpt"
    torch.save(checkpoint, foreign)
    load = ["train.do=False", "pretrained.load=True", f"pretrained.filename={foreign}"]
    with pytest.raises(CheckpointError) as refused:
        train(compose([*tiny, *load, "conv.causal=True", f"train.output_dir={tmp_path / 'refused'}"]))
    assert str(foreign) in str(refused.value) and "pretrained.unchecked=True" in str(refused.value)
    assert not (tmp_path / "refused").exists()
    evaluated = train(compose([*tiny, *load, "pretrained.unchecked=True", f"train.output_dir={tmp_path / 'eval'}"]))
    assert evaluated["test/acc"] == trained["test/acc"]
    with pytest.raises(CheckpointError) as shapes:  # still refused by its tensors' shapes
        train(
            compose(
                [*tiny, *load, "pretrained.unchecked=True", "net.no_hidden=12", f"train.output_dir={tmp_path / 'x'}"]
            )
        )
    assert str(foreign) in str(shapes.value)
