"""The paper presets ``cfg/experiment/<task>/ccnn_{4_140,6_380}.yaml``: they compose, pass the config checks, build
a model of the pinned size from the dataset's metadata alone, and take one optimizer step on fixture data of the
task's real shape."""

from __future__ import annotations

import functools
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from ckconv.hints import count_parameters
from tests.conftest import REPO, compose
from tests.fixtures import sequence_files, vision_files
from training.build import build_datamodule, build_module, build_network
from training.config.checks import check_config
from training.run.plan import check_against_data

PRESET_DIR = REPO / "cfg" / "experiment"
# Shared settings the presets name in their defaults lists; a separate config group, so `experiment=` cannot pick one.
BASE_DIR = REPO / "cfg" / "preset_base"
TASKS = (
    "smnist",
    "pmnist",
    "scifar10",
    "sc_raw",
    "sc_mfcc",
    "listops",
    "text",
    "image",
    "pathfinder",
    "image2d",
    "pathfinder2d",
    "cifar10",
    "cifar100",
    "stl10",
    "retrieval",
    "pathx",
)
VARIANTS = ("ccnn_4_140", "ccnn_6_380")
# Tasks the paper did not run: each variant extends the same variant of the task whose hyperparameters it copies.
COPIED_FROM = {"retrieval": "text", "pathx": "pathfinder"}
PRESETS = [f"{task}/{variant}" for task in TASKS for variant in VARIANTS]
# Presets of tasks outside the paper's grid (3D volumes), checked where their datamodules are; named here so that any
# other file under cfg/experiment still fails the test below.
OTHER_PRESETS = {"blobs2d/ccnn_2_16", "blobs3d/ccnn_2_16", "organmnist3d/ccnn_4_140", "organmnist3d/ccnn_6_380"}

# Parameters of each preset's network, measured with build_network on the dataset's metadata. The original's
# counts (reference §3) come out exactly: sMNIST and every 1-channel 1D task with 10 classes 198,769 / 1,993,091,
# ListOps 6,380 (kernel.no_hidden=32) 1,851,331, CIFAR-10 201,042 / 1,999,366, CIFAR-100 213,732 / 2,033,656.
PARAMETERS = {
    "smnist/ccnn_4_140": 198_769,
    "smnist/ccnn_6_380": 1_993_091,
    "pmnist/ccnn_4_140": 198_769,
    "pmnist/ccnn_6_380": 1_993_091,
    "scifar10/ccnn_4_140": 199_117,
    "scifar10/ccnn_6_380": 1_993_983,
    "sc_raw/ccnn_4_140": 198_769,
    "sc_raw/ccnn_6_380": 1_993_091,
    "sc_mfcc/ccnn_4_140": 202_075,
    "sc_mfcc/ccnn_6_380": 2_001_565,
    "listops/ccnn_4_140": 198_769,
    "listops/ccnn_6_380": 1_851_331,
    "text/ccnn_4_140": 197_500,
    "text/ccnn_6_380": 1_989_662,
    "image/ccnn_4_140": 198_769,
    "image/ccnn_6_380": 1_993_091,
    "pathfinder/ccnn_4_140": 197_500,
    "pathfinder/ccnn_6_380": 1_989_662,
    "image2d/ccnn_4_140": 200_694,
    "image2d/ccnn_6_380": 1_998_474,
    "pathfinder2d/ccnn_4_140": 199_425,
    "pathfinder2d/ccnn_6_380": 1_995_045,
    "cifar10/ccnn_4_140": 201_042,
    "cifar10/ccnn_6_380": 1_999_366,
    "cifar100/ccnn_4_140": 213_732,
    "cifar100/ccnn_6_380": 2_033_656,
    "stl10/ccnn_4_140": 201_042,
    "stl10/ccnn_6_380": 1_999_366,
    # Retrieval adds LRA's pair head ([u, v, u*v, u-v] -> Linear(4H, H) -> Linear(H, 1)): 78,681 / 578,551 more.
    "retrieval/ccnn_4_140": 276_040,
    "retrieval/ccnn_6_380": 2_567_642,
    "pathx/ccnn_4_140": 197_500,
    "pathx/ccnn_6_380": 1_989_662,
}
SIZE_RANGE = {"ccnn_4_140": (150_000, 260_000), "ccnn_6_380": (1_500_000, 2_600_000)}

# The step test keeps every flag of the preset (data shape, dropout, mask, omega_0, causal/FFT, kernel size,
# embedding, LnLoss, lr) but shrinks the network to one block of width 16 with an 8-wide kernel net: at full width
# the 32 steps took about 10 minutes on 2 CPU cores (e.g. STL-10 6,380 at 256x256: 200 s, Speech Commands raw
# 6,380: 46 s, Path-X 6,380: 43 s), against a budget of under a minute for this file. The data shapes are real.
# test_one_full_width_step covers one preset at its real width.
SHRINK = ["net.no_hidden=16", "kernel.no_hidden=8", "net.no_blocks=1"]
# Fixture datasets are tiny: hold out a handful of training examples instead of the real validation sizes.
VAL_SIZES = {"MNIST": 10, "CIFAR10": 10, "CIFAR100": 10, "STL10": 4, "IMDB": 2}


@functools.cache
def preset_config(preset: str):
    """The preset as composed with no other override (cached: read it, do not modify it)."""
    return compose([f"experiment={preset}"])


def preset_files() -> list[str]:
    return sorted(f"{p.parent.name}/{p.stem}" for p in PRESET_DIR.glob("*/*.yaml"))


def test_every_paper_cell_has_a_preset_and_nothing_else_is_there():
    found = set(preset_files())
    assert set(PRESETS) <= found
    assert found - set(PRESETS) <= OTHER_PRESETS, "a preset that is neither a paper cell nor in OTHER_PRESETS"
    assert set(PARAMETERS) == set(PRESETS)


def _leaves(tree: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for key, value in tree.items():
        out |= _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return out


@functools.cache
def default_flags() -> dict:
    """Every flag with the value ``python main.py`` runs with (the schema's defaults), dotted."""
    return _leaves(OmegaConf.to_container(compose([])))


def _defaults_and_body(path: Path) -> tuple[list[str], dict]:
    """A preset file's defaults list and its own flags (dotted)."""
    content = yaml.safe_load(path.read_text()) or {}
    return content.pop("defaults", []), _leaves(content)


@pytest.fixture(scope="module")
def parent_configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DictConfig]:
    """What each preset extends: cfg/ composed with a copy of the preset that keeps only its defaults list."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    root = tmp_path_factory.mktemp("cfg_copy") / "cfg"
    shutil.copytree(REPO / "cfg", root)
    for preset in PRESETS:
        path = root / "experiment" / f"{preset}.yaml"
        defaults, _ = _defaults_and_body(path)
        parent = path.with_name(f"_parent_{path.name}")
        parent.write_text("# @package _global_\n" + yaml.safe_dump({"defaults": defaults or ["_self_"]}))
    with initialize_config_dir(config_dir=str(root), version_base="1.3"):
        return {
            preset: hydra_compose("config", overrides=[f"experiment={preset.replace('/', '/_parent_')}"])
            for preset in PRESETS
        }


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_file_sets_only_what_its_defaults_do_not(preset, parent_configs):
    path = PRESET_DIR / f"{preset}.yaml"
    lines = path.read_text().splitlines()
    assert lines[0] == "# @package _global_"
    assert lines[1].startswith("# ") and ("Source:" in lines[1] or "not in the paper" in lines[1])
    flat_defaults = default_flags()
    parent = parent_configs[preset]
    _, body = _defaults_and_body(path)
    for flag, value in body.items():
        assert flag in flat_defaults, f"{preset}: unknown flag {flag}"
        inherited = OmegaConf.select(parent, flag)
        assert value != inherited, f"{preset}: {flag}={value!r} is what its defaults list gives already; remove it"


@pytest.mark.parametrize("base", sorted(p.stem for p in BASE_DIR.glob("*.yaml")))
def test_preset_base_sets_only_flags_that_differ_from_the_defaults(base):
    path = BASE_DIR / f"{base}.yaml"
    assert path.read_text().startswith("# @package _global_\n")
    flat_defaults = default_flags()
    defaults, body = _defaults_and_body(path)
    assert not defaults and body
    for flag, value in body.items():
        assert flag in flat_defaults, f"preset_base/{base}: unknown flag {flag}"
        assert value != flat_defaults[flag], f"preset_base/{base}: {flag}={value!r} is the default; remove it"


def test_6_380_presets_extend_their_4_140_sibling_and_shared_values_live_in_the_bases():
    used_bases = set()
    for task in TASKS:
        small, _ = _defaults_and_body(PRESET_DIR / task / "ccnn_4_140.yaml")
        wide, _ = _defaults_and_body(PRESET_DIR / task / "ccnn_6_380.yaml")
        if task in COPIED_FROM:  # not a paper run: the source task's preset of the same variant, one change
            assert small == [f"/experiment/{COPIED_FROM[task]}/ccnn_4_140", "_self_"]
            assert wide == [f"/experiment/{COPIED_FROM[task]}/ccnn_6_380", "_self_"]
            continue
        assert small[:2] == ["/preset_base/paper", "/preset_base/ccnn_4_140"] and small[-1] == "_self_"
        assert ("/preset_base/causal_1d" in small) is preset_config(f"{task}/ccnn_4_140").conv.causal
        assert wide == [f"/experiment/{task}/ccnn_4_140", "/preset_base/ccnn_6_380", "_self_"]
        used_bases |= {entry.removeprefix("/preset_base/") for entry in small + wide if "preset_base" in entry}
    # Every base is used, and none can be chosen with experiment= (they live outside cfg/experiment).
    assert used_bases == {p.stem for p in BASE_DIR.glob("*.yaml")}
    assert not any(p.name.startswith("_") for p in PRESET_DIR.rglob("*.yaml"))


def _checked_config(overrides: list[str]):
    cfg = compose(overrides)
    check_config(cfg)
    return cfg


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_builds_a_model_of_the_pinned_size_from_metadata(preset, tmp_path):
    cfg = _checked_config([f"experiment={preset}", "train.dry_run=True", f"dataset.data_dir={tmp_path / 'none'}"])
    meta = build_datamodule(cfg).meta
    check_against_data(cfg, meta)
    net = build_network(cfg, meta)
    parameters = count_parameters(net.parameters())
    assert parameters == PARAMETERS[preset]
    encoder = parameters - (count_parameters(net.readout.parameters()) if meta.paired else 0)
    low, high = SIZE_RANGE[preset.split("/")[1]]
    assert low <= encoder <= high  # "200K" / "2M" (for Retrieval: without the pair head)
    assert not (tmp_path / "none").exists()  # metadata only: nothing read or downloaded


def test_paper_semantics_of_the_presets():
    for preset in PRESETS:
        cfg = preset_config(preset)
        assert cfg.optimizer.weight_decay_type == "ln_loss" and cfg.scheduler.name == "cosine"
        assert cfg.conv.type == "SeparableFlexConv" and cfg.kernel.type == "MAGNet" and cfg.kernel.no_layers == 3
        one_d = cfg.dataset.data_type == "sequence" or cfg.dataset.name in ("SpeechCommands", "ListOps", "IMDB", "AAN")
        assert cfg.conv.causal is one_d and (cfg.conv.use_fft is True) is one_d
        assert cfg.kernel.size == "same" if one_d else isinstance(cfg.kernel.size, int)
        if cfg.dataset.name in ("ListOps", "IMDB", "AAN"):
            assert cfg.net.embedding == "float"
        wide = preset.endswith("6_380")
        assert (cfg.net.no_blocks, cfg.net.no_hidden) == ((6, 380) if wide else (4, 140))
        assert cfg.kernel.no_hidden == (64 if wide and not preset.startswith("listops") else 32)
    assert preset_config("cifar10/ccnn_4_140").scheduler.warmup_epochs == 5
    assert preset_config("pathx/ccnn_4_140").dataset.params.resolution == 128


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("preset_data")
    vision_files.write_mnist(root)
    vision_files.write_cifar10(root)
    vision_files.write_cifar100(root)
    vision_files.write_stl10(root)
    sequence_files.write_speech_commands(root)
    sequence_files.write_listops(root)
    sequence_files.write_imdb(root)
    sequence_files.write_aan(root)
    sequence_files.write_pathfinder(root)
    sequence_files.write_pathfinder(root, resolution=128)
    return root


def _one_step(preset: str, data: Path, extra: list[str]) -> tuple[torch.Tensor, torch.Tensor, float]:
    name = preset_config(preset).dataset.name
    overrides = [
        f"experiment={preset}",
        f"dataset.data_dir={data}",
        "dataset.download=False",
        "train.batch_size=2",
        "train.accumulate_grad_steps=1",
        "no_workers=0",
        *extra,
    ]
    if name in VAL_SIZES:
        overrides.append(f"dataset.params.val_size={VAL_SIZES[name]}")
    cfg = _checked_config(overrides)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    x, y = next(iter(datamodule.train_dataloader()))
    torch.manual_seed(0)
    module = build_module(cfg, datamodule.meta)
    optimizer = module.optimizer_settings.build(module.net)  # the preset's optimizer, groups and mask rate
    before = [p.detach().clone() for p in module.parameters()]
    with pytest.warns(UserWarning, match="self.log"):  # no Trainer attached: logging is skipped
        loss = module.training_step((x, y), 0)
    loss.backward()
    optimizer.step()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))
    assert torch.isfinite(loss) and changed > 0
    return x, y, loss.item()


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_takes_one_training_step_on_data_of_its_shape(preset, fixture_data):
    x, y, _ = _one_step(preset, fixture_data, SHRINK)
    meta = build_datamodule(preset_config(preset)).meta
    if meta.vocab_size is not None:
        assert x.dtype == torch.int64  # token ids; the float embedding turns them into one channel
        assert tuple(x.shape[-1:]) == tuple(meta.size)
        assert x.dim() == (3 if meta.paired else 2)
    else:
        assert tuple(x.shape[1:]) == (meta.in_channels, *meta.size)
    assert x.shape[0] == 2 and y.shape == (2,)


def test_one_full_width_step(fixture_data):
    """The real CCNN_{4,140} width on LRA Image (1024 steps): about a second on CPU."""
    _, _, loss = _one_step("image/ccnn_4_140", fixture_data, [])
    # Cross-entropy of a fresh 10-class network (LnLoss weight 0 here): ln(10) = 2.303; measured 2.39.
    assert loss == pytest.approx(math.log(10), abs=0.5)
