"""``python main.py`` refuses what cannot run in one line that names the culprit, exit code 2, with nothing written
anywhere; a failure while running is one line and exit code 1; Ctrl-C is 130.

The table of bad command lines runs through ``training.cli.main`` in this process (the function main.py calls); a
few cases run main.py as a process of its own, for what only a process shows: its exit code, what it loaded, a
signal.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, SHIPPED, TINY, main_env, main_py, run_main, tree


def _fake_run(folder: Path) -> Path:
    """A folder that holds a run: a checkpoint in it."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"not read")
    return folder


# args -> what the one line must name (a flag, a file, a folder, a preset)
BAD_COMMAND_LINES: dict[str, tuple[list[str], str]] = {
    "preset typo": (["experiment=smnist/ccnn_9_999"], "experiment=smnist/ccnn_9_999"),
    "task typo": (["experiment=smnsit/ccnn_4_140"], "smnist"),
    "flag typo": (["optimzer.lr=0.1"], "optimizer.lr"),
    "added flag": (["+optimizer.lrr=0.1"], "optimizer.lrr"),
    "flag added again": (["+optimizer.lr=0.1"], "optimizer.lr"),
    "wrong type": (["train.epochs=abc"], "train.epochs"),
    "huge count": (["net.no_hidden=1e20"], "net.no_hidden"),
    "wrong type of a dataset option": (["dataset.name=STL10", "dataset.params.resolution=big"], "resolution"),
    "not a number lr": (["optimizer.lr=nan"], "optimizer.lr"),
    "negative lr": (["optimizer.lr=-0.1"], "optimizer.lr"),
    "unknown optimizer": (["optimizer.name=Adamm"], "optimizer.name"),
    "optimizer without groups": (["optimizer.name=LBFGS"], "optimizer.name"),
    "momentum for AdamW": (["optimizer.momentum=0.9"], "optimizer.momentum"),
    "unknown scheduler": (["scheduler.name=cosinee"], "scheduler.name"),
    "plateau with warm-up": (["scheduler.name=plateau"], "scheduler.warmup_epochs"),
    "factor of another schedule": (["scheduler.factor=0.5"], "scheduler.factor"),
    "removed flag": (["~optimizer.lr"], "optimizer.lr"),
    "flag without a value": (["net.no_hidden"], "net.no_hidden"),
    "unreadable value": (["net.no_hidden=[8"], "net.no_hidden"),
    "preset with +": (["+experiment=smnist/ccnn_4_140"], "experiment"),
    "seed out of range": (["seed=-1"], "seed"),
    "fraction above one": (["train.limit_train_batches=2.5"], "train.limit_train_batches"),
    "negative clipping": (["train.grad_clip=-1"], "train.grad_clip"),
    "flag of another layer": (["conv.type=CKConv", "mask.threshold=0.2"], "mask.threshold"),
    "flag of another kernel net": (["kernel.type=MLP", "kernel.omega_0=20"], "kernel.omega_0"),
    "flag of a discrete layer": (["conv.type=Conv", "kernel.size=3", "kernel.bandlimit=1.0"], "kernel.bandlimit"),
    "unwritable run folder": (["train.output_dir=/proc/1/no/run"], "/proc/1/no/run"),
    "resume a folder": (["train.resume=.", "train.output_dir=r"], "train.resume"),
    "null data folder": (["dataset.data_dir=null"], "dataset.data_dir"),
    "negative workers": (["no_workers=-5"], "no_workers"),
    "one folder for many jobs": (["-m", "seed=0,1", "train.output_dir=o"], "train.output_dir"),
    "no GPU": (["device=cuda"], "device"),
    "device typo": (["device=gpuu"], "device"),
    "causal 2D": (["dataset.name=MNIST", "conv.causal=True"], "conv.causal"),
    "zero width": (["net.no_hidden=0"], "net.no_hidden"),
    "block widths that are not numbers": (["net.block_width_factors=[[a,1]]"], "net.block_width_factors"),
    "dropout of one": (["net.dropout=1.0"], "net.dropout"),
    "mask threshold": (["mask.threshold=1.5"], "mask.threshold"),
    "kernel net name": (["kernel.type=magnet"], "kernel.type"),
    "conv layer name": (["conv.type=Transformer"], "conv.type"),
    "dataset name": (["dataset.name=mnist"], "dataset.name"),
    "option of another dataset": (["dataset.params.mfcc=True"], "dataset.params.mfcc"),
    "dead flag": (["hooks_enabled=True"], "hooks_enabled"),
    "dead list flag": (["hooks=[grad_norm]"], "hooks"),
    "point clouds": (["dataset.params.num_nodes=512"], "dataset.params.num_nodes"),
    "accumulation": (["train.batch_size=10", "train.accumulate_grad_steps=3"], "train.batch_size"),
    "grad norm": (["train.track_grad_norm=-2"], "train.track_grad_norm"),
    "ema decay": (["train.ema=1.5"], "train.ema"),
    "filename without load": (["pretrained.filename=model.ckpt"], "pretrained.filename"),
    "load without filename": (["pretrained.load=True"], "pretrained.load"),
    "evaluate nothing": (["train.do=False"], "train.do"),
    "embedding of signals": (["net.embedding=float"], "net.embedding"),
    "downsampling past the blocks": (["net.downsampling=[7]"], "net.downsampling"),
    "missing checkpoint": (["train.resume=nothing.ckpt", "train.output_dir=elsewhere"], "nothing.ckpt"),
    "weights-only resume": ([f"train.resume={SHIPPED}", "train.output_dir=r"], str(SHIPPED)),
    "other network": (
        ["train.do=False", "pretrained.load=True", f"pretrained.filename={SHIPPED}", "conv.causal=True"],
        "conv.causal",
    ),
    "no download, no files": (["dataset.name=MNIST", "dataset.download=False", "dataset.data_type=sequence"], "MNIST"),
    "multirun with a bad value": (["-m", "optimizer.lr=0.1,abc"], "optimizer.lr"),
    "multirun with a bad value of a constructor": (["-m", "net.no_hidden=8,0,16"], "net.no_hidden"),
    "multirun with a bad choice": (["-m", "kernel.type=MAGNet,Siren"], "kernel.type"),
    "multirun with a bad initial width": (["-m", "mask.init_value=0.2,-0.5"], "mask.init_value"),
    "optuna search with no trial": (
        ["-m", "+hparams_search=omega_mask_optuna", "hydra.sweeper.n_trials=0"],
        "hydra.sweeper.n_trials",
    ),
    "optuna study nowhere to write": (
        ["-m", "+hparams_search=omega_mask_optuna", "hydra.sweeper.storage=sqlite:////proc/1/no/study.db"],
        "hydra.sweeper.storage",
    ),
    "optuna range outside the flag's values": (
        ["-m", "+hparams_search=omega_mask_optuna", "hydra.sweeper.params.mask.init_value=interval(-0.5, 0.5)"],
        "mask.init_value",
    ),
    "no batch of the test split": (
        [*TINY, "train.limit_test_batches=0.01"],
        "train.limit_test_batches",
    ),
    "no validation batch": (["train.limit_val_batches=0"], "train.limit_val_batches"),
    "no training batch": (["train.limit_train_batches=0"], "train.limit_train_batches"),
    "a module that is no activation": (["net.nonlinearity=Module"], "net.nonlinearity"),
    "negative data seed": (["dataset.params.data_seed=-1"], "dataset.params.data_seed"),
    "seed beyond numpy's": (["seed=4294967296"], "seed"),
    "a bad value after a good one": (["train.epochs=2", "train.epochs=1.5"], "1.5"),
    "a run folder where nothing can be written": (["train.output_dir=/proc/ccnn_run"], "/proc"),
    "multirun that sweeps no value": (["-m", "seed=range(2,0)"], "seed=range(2,0)"),
    "multirun folder is a file": (["-m", "seed=0,1", "hydra.sweep.dir=main.log"], "hydra.sweep.dir"),
    "multirun folder where nothing can be written": (["-m", "seed=0,1", "hydra.sweep.dir=/proc/sweep"], "/proc"),
    "optuna storage that is no URL": (
        ["-m", "+hparams_search=omega_mask_optuna", "hydra.sweeper.storage=notaurl"],
        "hydra.sweeper.storage",
    ),
    "optuna direction": (["-m", "+hparams_search=omega_mask_optuna", "hydra.sweeper.direction=up"], "direction"),
    "optuna search without -m": (["+hparams_search=omega_mask_optuna"], "-m"),
}


@pytest.mark.parametrize("name", [*BAD_COMMAND_LINES, "another run's folder", "data folder is a file"])
def test_a_bad_command_line_is_refused_in_one_line_naming_the_culprit_and_writes_nothing(name, tmp_path, data_dir):
    cases = dict(BAD_COMMAND_LINES)
    occupied = _fake_run(tmp_path / "occupied")
    cases["another run's folder"] = ([*TINY, f"train.output_dir={occupied}"], str(occupied))
    a_file = occupied / "checkpoints" / "last.ckpt"
    cases["data folder is a file"] = ([f"dataset.data_dir={a_file}"], str(a_file))
    args, culprit = cases[name]
    if name == "no batch of the test split":
        args = [*args, f"dataset.data_dir={data_dir}"]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    if name == "multirun folder is a file":  # a file that is not the run's: nothing may be written over it
        (cwd / "main.log").write_text("a file of the user's\n")
    occupied_before, data_before, cwd_before = tree(occupied), tree(data_dir), tree(cwd)
    result = run_main(*args, cwd=cwd)
    assert result.returncode == 2, (args, result.stdout[-1500:], result.stderr[-1500:])
    [line] = result.error_lines()
    assert line.startswith("error: ") and culprit in line, line
    assert tree(cwd) == cwd_before, f"{args} left {sorted(tree(cwd))} behind"
    assert tree(occupied) == occupied_before
    # The data folder may gain the cache of a generated dataset (read to count batches); nothing in it changes.
    files_before = {name: mtime for name, mtime in data_before.items() if (data_dir / name).is_file()}
    assert files_before.items() <= tree(data_dir).items()


@pytest.mark.parametrize(
    "args",
    [
        ["kernel.type=magnet"],
        ["dataset.name=mnist"],
        ["net.no_hiden=3"],
        ["net.no_hidden=0"],
        ["-m", "net.no_hidden=8,0,16"],
    ],
)
def test_a_bad_flag_is_refused_before_torch_is_loaded(args, tmp_path):
    # Loading torch takes 1.5 s, and Lightning 3 s more: every flag error is found without them.
    probe = (
        "import atexit, runpy, sys; atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules)); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    command = [sys.executable, "-c", probe, str(REPO / "main.py"), *args]
    result = subprocess.run(command, cwd=tmp_path, env=main_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "torch loaded: False"
    assert list(tmp_path.iterdir()) == []


def test_a_process_exits_0_when_done_2_when_refused_and_1_when_it_fails_running(data_dir, tmp_path):
    done = main_py(*TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={tmp_path / 'ok'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Final: " in done.stdout and (tmp_path / "ok" / "results.json").is_file()
    refused = main_py("net.no_hidden=0", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.startswith("error: net.no_hidden")
    failed = main_py(*TINY, f"dataset.data_dir={data_dir}", "optimizer.lr=1e30", f"train.output_dir={tmp_path / 'nan'}")
    assert failed.returncode == 1, failed.stderr[-2000:]
    [line] = [line for line in failed.stdout.splitlines() + failed.stderr.splitlines() if "non-finite" in line]
    assert "optimizer.lr" in line and "train.grad_clip" in line  # the flags that fix it
    assert line in (tmp_path / "nan" / "main.log").read_text()  # the run's log says why it stopped
    assert not (tmp_path / "nan" / "results.json").exists()


def test_the_traceback_switch_changes_what_is_shown_not_the_exit_code(tmp_path, monkeypatch):
    monkeypatch.setenv("CCNN_TRACEBACK", "1")  # what -v sets
    result = run_main("net.no_hidden=0", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" in result.stderr and "net.no_hidden" in result.stderr
    assert tree(tmp_path) == {}


def test_a_folder_left_by_a_start_interrupted_before_its_first_checkpoint_can_be_used_again(data_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "main.log").write_text("an interrupted start\n")
    result = run_main(*TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run / "results.json").is_file() and (run / "main.log").read_text().startswith("an interrupted start")


def test_a_new_kernel_net_is_usable_after_one_registry_entry_and_the_flags_it_does_not_read_are_refused(
    data_dir, tmp_path
):
    """A copy of the project with a kernel net of its own: a class with its signature, and one registry line."""
    copy = tmp_path / "project"
    for part in ("argcheck", "ckconv", "models", "datamodules", "training", "cfg"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "main.py", copy / "main.py")
    (copy / "ckconv" / "kernels" / "cosine.py").write_text(
        '''"""A kernel net of one cosine layer: a new kernel net declares what it reads by its signature."""

from typing import Any

import torch
from torch import nn

from argcheck import PositiveFloat, check_arguments
from ckconv.kernels.base import KernelNet


class CosineNet(KernelNet):
    def __init__(self, data_dim: int, out_channels: int, *, omega_0: PositiveFloat = 10.0, **kwargs: Any) -> None:
        check_arguments(CosineNet.__init__, locals())
        super().__init__(data_dim, out_channels, **kwargs)
        self.omega_0 = omega_0
        self.hidden = nn.Linear(data_dim, self.hidden_channels)
        self.output_layer = nn.Linear(self.hidden_channels, out_channels)

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(torch.cos(self.omega_0 * self.hidden(x)))
'''
    )
    registry = copy / "ckconv" / "kernels" / "__init__.py"
    text = registry.read_text()
    text = text.replace('    "MLP": MLP,\n', '    "MLP": MLP,\n    "Cosine": CosineNet,\n')
    registry.write_text(
        text.replace(
            "from ckconv.kernels.base import KernelNet\n",
            "from ckconv.kernels.base import KernelNet\nfrom ckconv.kernels.cosine import CosineNet\n",
        )
    )
    env = {**main_env(), "PYTHONPATH": str(copy)}

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(copy / "main.py"), *TINY, f"dataset.data_dir={data_dir}", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    trained = run("kernel.type=Cosine", "kernel.omega_0=3.0", f"train.output_dir={tmp_path / 'run'}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    weights = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert "net.conv1.kernel_net.hidden.weight" in weights["state_dict"]  # CosineNet's own layer was trained
    refused = run("kernel.type=Cosine", "kernel.alpha=2.0")  # a Gabor flag: CosineNet's signature has no alpha
    assert refused.returncode == 2 and "kernel.alpha" in refused.stderr
    refused = run("kernel.type=Cosine", "kernel.omega_0=-1")  # its own rule, from its annotation
    assert refused.returncode == 2 and "kernel.omega_0" in refused.stderr
