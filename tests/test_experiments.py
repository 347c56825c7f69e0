"""experiments/: the seed runner's collection and aggregation, the README table and plot, the Optuna sweeper config,
and every ``python main.py ...`` command in experiments/README.md (so the docs cannot drift from the configs)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from experiments import run as runner
from experiments import summarize
from tests.conftest import REPO, compose

README = REPO / "experiments" / "README.md"

FAKE_METRICS = {
    0: {"val/acc": 0.91, "test/acc": 0.90, "parameters": 198769.0},
    1: {"val/acc": 0.93, "test/acc": 0.92, "parameters": 198769.0},
    2: {"val/acc": 0.92, "test/acc": 0.94, "parameters": 198769.0},
}


def test_run_seeds_collects_one_row_per_seed_and_aggregates(monkeypatch):
    seen = []

    def fake_train(cfg):
        seen.append((cfg.seed, cfg.kernel.omega_0, cfg.train.epochs, cfg.train.output_dir))
        return FAKE_METRICS[cfg.seed]

    ticks = iter(range(100))
    rows = runner.run_seeds(
        "smnist", "ccnn_4_140", [0, 1, 2], ["train.epochs=3"], train=fake_train, clock=lambda: 10.0 * next(ticks)
    )
    assert [s[0] for s in seen] == [0, 1, 2]
    assert all(s[1] == 2976.49 and s[2] == 3 and "seed" in s[3] for s in seen)  # the preset + the extra flag
    assert [r["test_acc"] for r in rows] == ["90.0000", "92.0000", "94.0000"]
    assert {r["wall_s"] for r in rows} == {"10.0"} and {r["extra"] for r in rows} == {"train.epochs=3"}
    text = runner.format_summary("smnist", "ccnn_4_140", rows)
    assert "test 92.00 ± 2.00 % (n=3)" in text and "val 92.00 ± 1.00 % (n=3)" in text


def test_result_row_and_aggregate_are_pure():
    rows = [
        runner.result_row("text", "ccnn_4_140", s, FAKE_METRICS[s], 5.0, f"2025-01-0{s + 1}", "m (cpu)", epochs=60)
        for s in (0, 1, 2)
    ]
    rows.append(runner.result_row("text", "ccnn_4_140", 3, {"test/acc": 0.1}, 1.0, "2025-02-01", "m", extra=["x=1"]))
    rows.append(runner.result_row("text", "ccnn_6_380", 0, {"test/acc": 0.5}, 1.0, "2025-01-05", "m"))
    assert rows[0] == {
        "task": "text",
        "variant": "ccnn_4_140",
        "seed": "0",
        "test_acc": "90.0000",
        "val_acc": "91.0000",
        "epochs": "60",
        "date": "2025-01-01",
        "machine": "m (cpu)",
        "wall_s": "5.0",
        "extra": "",
    }
    summary = runner.aggregate(rows)
    four = summary[("text", "ccnn_4_140")]  # the run with extra flags is not averaged in
    assert four["n"] == 3 and four["mean"] == pytest.approx(92.0) and four["std"] == pytest.approx(2.0)
    assert four["date"] == "2025-01-03" and four["seeds"] == [0, 1, 2]
    assert summary[("text", "ccnn_6_380")] == {"mean": 50.0, "std": 0.0, "n": 1, "date": "2025-01-05", "seeds": [0]}
    assert runner.mean_std([])[2] == 0


def test_csv_round_trip_appends(tmp_path):
    path = tmp_path / "r.csv"
    row = runner.result_row("pmnist", "ccnn_4_140", 0, FAKE_METRICS[0], 1.0, "2025-01-01", "m")
    runner.append_rows(path, [row])
    runner.append_rows(path, [row | {"seed": "1"}])
    assert [r["seed"] for r in runner.read_rows(path)] == ["0", "1"]
    assert path.read_text().count("task,variant,seed") == 1


def test_summarize_writes_table_and_png(tmp_path):
    results = tmp_path / "results.csv"
    rows = [
        runner.result_row("smnist", "ccnn_4_140", s, {"test/acc": acc, "val/acc": acc}, 3.0, "2025-03-0" + str(s), "m")
        for s, acc in ((1, 0.9950), (2, 0.9970), (3, 0.9990))
    ]
    runner.append_rows(results, rows)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{summarize.START}\nold table\n{summarize.END}\noutro\n")
    png = tmp_path / "plot.png"
    params = {"smnist/ccnn_4_140": 198769}
    table = summarize.summarize(results, readme, png, parameters=params)

    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert table in text
    line = next(r for r in table.splitlines() if "experiment=smnist/ccnn_4_140`" in r)
    assert "99.70 ± 0.20 (n=3, 2025-03-03)" in line and "198,769" in line and "99.72 [P?]" in line
    assert table.count("not run yet") == 2 * len(summarize.TASKS) - 1
    assert "| ✗ [P]" in table  # Retrieval / Path-X: the paper has no result; nothing invented
    data = png.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"

    with pytest.raises(ValueError, match="results:start"):
        summarize.replace_between_markers("no markers", table)


def test_paper_anchors_carry_provenance_tags():
    for (task, _), anchor in summarize.PAPER.items():
        assert task in dict(summarize.TASKS)
        assert re.match(r"\[(R|P|P\?)\]", anchor.source), anchor
        assert (anchor.value is None) == (anchor.text in ("—", "✗"))


def readme_commands(readme: Path = README) -> list[str]:
    """Every ``python main.py ...`` command in a README (code blocks and inline code)."""
    text = readme.read_text()
    found = re.findall(r"python main\.py[^`\n#]*", text)
    return sorted({c.strip() for c in found})


ALL_README_COMMANDS = [
    (p.relative_to(REPO).as_posix(), c) for p in (README, REPO / "README.md") for c in readme_commands(p)
]


def test_readme_has_commands_for_every_preset_once_the_table_is_generated():
    # The committed README must hold the generated table (run `python -m experiments.summarize`).
    commands = readme_commands()
    for task, _ in summarize.TASKS:
        for variant in summarize.VARIANTS:
            assert f"python main.py experiment={task}/{variant}" in commands


def optuna_plugin_installed() -> bool:
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
    except ModuleNotFoundError:  # no hydra_plugins namespace at all
        return False


@pytest.mark.parametrize(("readme", "command"), ALL_README_COMMANDS)
def test_every_readme_command_composes(readme, command):
    words = shlex.split(re.sub(r"<[^>]+>", "placeholder", command))[2:]  # drop "python main.py"; fill <run> etc.
    # -m / --multirun: a sweep of the same config; compose its first point (key=a,b -> key=a).
    overrides = [re.sub(r"^([^=]+)=([^,]+),.*$", r"\1=\2", w) for w in words if not w.startswith("-")]
    sweeper = [o for o in overrides if o.lstrip("+").startswith("hparams_search=")]
    if sweeper and not optuna_plugin_installed():
        overrides = [o for o in overrides if o not in sweeper]  # the plugin is not installed here
    cfg = compose(overrides)
    from training.config import validate_config

    validate_config(cfg)


def test_optuna_sweeper_config_names_existing_flags():
    path = REPO / "cfg" / "hparams_search" / "omega_mask_optuna.yaml"
    assert path.read_text().startswith("# @package _global_")
    config = yaml.safe_load(path.read_text())
    assert {"override /hydra/sweeper": "optuna"} in config["defaults"]
    sweeper = config["hydra"]["sweeper"]
    assert sweeper["direction"] == "maximize"
    assert set(sweeper["params"]) == {"kernel.omega_0", "mask.init_value"}
    assert sweeper["params"]["kernel.omega_0"].startswith("tag(log, interval(")
    defaults = OmegaConf.load(REPO / "cfg" / "config.yaml")
    for flag in sweeper["params"]:
        assert OmegaConf.select(defaults, flag) is not None, flag
    assert "hydra-optuna-sweeper" in README.read_text()


def test_main_py_returns_validation_accuracy_to_the_sweeper():
    source = (REPO / "main.py").read_text()
    assert 'metrics.get("val/acc"' in source
    assert Path(runner.__file__).parent == REPO / "experiments"
