"""Trust: no silent wrong result, no overwritten result, every mistake refused before anything is written.

Each test reproduces a way the project once gave a wrong result or destroyed one (issue 11, cases 1-10), through
``python main.py`` as a user runs it wherever the command line itself is part of the failure.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import SHIPPED, TINY, compose, run_main, start_main_py, tree
from training.callbacks.epochs import MEASURED_PREFIXES
from training.config.checks import ConfigError
from training.run.checkpoints import CheckpointError, CheckpointSaveError, atomic_torch_save, read_checkpoint
from training.run.execute import train
from training.run.folder import RunFolderError


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------------------------
# 1. A misspelt preset trained the default model and exited 0.
# ----------------------------------------------------------------------------------------------------------------
def test_a_preset_that_does_not_exist_is_refused_with_the_presets_of_its_task(tmp_path):
    result = run_main("experiment=smnist/ccnn_9_999", cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.error_lines()
    assert "smnist/ccnn_4_140" in line and "smnist/ccnn_6_380" in line  # the presets there are
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------------------------
# 2. A run replaced a finished run's checkpoints; two runs on one folder mixed their checkpoints.
# ----------------------------------------------------------------------------------------------------------------
def test_a_new_run_never_writes_into_a_folder_that_holds_another_run(tiny, tmp_path):
    train(compose(tiny))
    run = tmp_path / "run"
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RunFolderError) as refused:
        train(compose([*tiny, "seed=1"]))
    assert str(run) in str(refused.value) and f"train.resume={run / 'checkpoints' / 'last.ckpt'}" in str(refused.value)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()} == before


def test_a_second_process_on_a_folder_in_use_is_refused(data_dir, tmp_path):
    run = tmp_path / "run"
    # Long enough to outlast the second process's start on a loaded machine (it is killed at the end).
    flags = [*TINY, "train.epochs=5000", f"dataset.data_dir={data_dir}", f"train.output_dir={run}"]
    first = start_main_py(*flags, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (run / ".lock").is_file() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second could start; make it longer"
        second = run_main(*[f for f in flags if "epochs" not in f], "train.epochs=1", cwd=tmp_path)
        assert first.poll() is None, "the first run ended before the second was refused; make it longer"
        assert second.returncode == 2
        [line] = error_lines(second)
        assert str(run) in line and f"pid {first.pid}" in line  # the folder, and who holds it
    finally:
        first.kill()
        first.wait()


# ----------------------------------------------------------------------------------------------------------------
# 3. A copied run, resumed, evaluated the best checkpoint of the run it was copied from.
# ----------------------------------------------------------------------------------------------------------------
def test_a_resumed_copy_evaluates_its_own_best_checkpoint(tiny, tmp_path):
    tiny = [*tiny, "test.checkpoint=best"]
    original = tmp_path / "run"
    train(compose([*tiny, "train.epochs=2"]))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    # Make the original's best checkpoint worthless: a resumed copy that read it would report its accuracy.
    spoiled = torch.load(original / "checkpoints" / "best.ckpt", weights_only=False)
    spoiled["state_dict"] = {k: torch.zeros_like(v) for k, v in spoiled["state_dict"].items()}
    torch.save(spoiled, original / "checkpoints" / "best.ckpt")

    last = copy / "checkpoints" / "last.ckpt"
    resumed = train(compose([*tiny, "train.epochs=3", "train.output_dir=null", f"train.resume={last}"]))
    assert Path(resumed["checkpoint"]) == copy / "checkpoints" / "best.ckpt"
    state = torch.load(copy / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    paths = [v["best_model_path"] for k, v in state.items() if k.startswith("RunCheckpoint")]
    assert paths and all(Path(p).parent == copy / "checkpoints" for p in paths)
    evaluated = train(
        compose(
            [
                *tiny,
                "train.do=False",
                "pretrained.load=True",
                f"pretrained.filename={copy / 'checkpoints' / 'best.ckpt'}",
                f"train.output_dir={tmp_path / 'eval'}",
            ]
        )
    )
    assert resumed["test/acc"] == evaluated["test/acc"]


def test_a_fine_tuning_run_reports_its_own_best_validation_accuracy_not_the_checkpoints(tiny, tmp_path):
    trained = train(compose(tiny))
    record = torch.load(trained["checkpoint"], weights_only=False)
    record["state_dict"]["best_val_acc"] = torch.tensor(0.99)  # a record no epoch of the fine-tuning run reaches
    start = tmp_path / "start.ckpt"
    torch.save(record, start)
    flags = [*tiny, "pretrained.load=True", f"pretrained.filename={start}", f"train.output_dir={tmp_path / 'ft'}"]
    tuned = train(compose(flags))
    assert tuned["val/acc_best"] == tuned["val/acc_last"] < 0.99  # one epoch: its accuracy is the run's best


def test_a_resumed_copy_without_its_best_checkpoint_says_what_it_evaluates(tiny, tmp_path, capsys):
    tiny = [*tiny, "test.checkpoint=best"]
    # Only last.ckpt copied: the run evaluated its final weights and reported the old record beside them, silently.
    train(compose(tiny))
    copy = tmp_path / "copy" / "checkpoints"
    copy.mkdir(parents=True)
    shutil.copy(tmp_path / "run" / "checkpoints" / "last.ckpt", copy / "last.ckpt")
    capsys.readouterr()
    train(compose([*tiny, "train.output_dir=null", f"train.resume={copy / 'last.ckpt'}"]))
    note = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("note: "))
    assert str(copy / "best.ckpt") in note  # says that the final weights are what it evaluates


@pytest.fixture(scope="module")
def two_finished_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, Path, Path]:
    """Run A (2 epochs, with ``older.ckpt``: its state after epoch 1), run B (seed 1), and a copy of A's
    ``last.ckpt`` outside any run folder."""
    base = tmp_path_factory.mktemp("finished")
    a, b = base / "a", base / "b"
    flags = [*TINY, f"dataset.data_dir={data_dir}"]
    train(compose([*flags, f"train.output_dir={a}"]))
    shutil.copy(a / "checkpoints" / "last.ckpt", a / "checkpoints" / "older.ckpt")
    train(compose([*flags, "train.epochs=2", f"train.resume={a / 'checkpoints' / 'last.ckpt'}"]))
    train(compose([*flags, "seed=1", f"train.output_dir={b}"]))
    loose = base / "loose.ckpt"
    shutil.copy(a / "checkpoints" / "last.ckpt", loose)
    return a, b, loose


def test_a_checkpoint_from_outside_never_resumes_into_another_runs_folder(two_finished_runs, data_dir):
    _, b, loose = two_finished_runs
    before = tree(b)
    flags = [*TINY, f"dataset.data_dir={data_dir}", "train.epochs=3", f"train.resume={loose}"]
    with pytest.raises(RunFolderError) as refused:
        train(compose([*flags, f"train.output_dir={b}"]))
    assert str(loose) in str(refused.value) and str(b) in str(refused.value)
    assert tree(b) == before


def test_resuming_must_continue_from_the_runs_latest_epoch_and_never_shorten_it(two_finished_runs, data_dir):
    a, _, _ = two_finished_runs
    before = tree(a)
    flags = [*TINY, f"dataset.data_dir={data_dir}"]
    older, last = a / "checkpoints" / "older.ckpt", a / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError) as rewinding:
        train(compose([*flags, "train.epochs=3", f"train.resume={older}"]))
    assert str(older) in str(rewinding.value) and f"train.resume={last}" in str(rewinding.value)
    with pytest.raises(CheckpointError) as shortening:
        train(compose([*flags, "train.epochs=1", f"train.resume={last}"]))
    assert "train.epochs=2" in str(shortening.value)  # the epochs it has trained, and so the fewest it can take
    with pytest.raises(ConfigError) as folder:
        train(compose([*flags, "train.epochs=3", f"train.resume={a}"]))
    assert folder.value.flag == "train.resume" and str(a / "checkpoints" / "last.ckpt") in str(folder.value)
    assert tree(a) == before


def test_a_run_resumed_with_more_epochs_follows_the_cosine_of_its_new_length(data_dir, tmp_path):
    # Restored as the checkpoint saved it, the cosine kept the 2-epoch run's length: its rate reached 0 at the old
    # end, rose back to the full rate by the end of epoch 3 and fell to 0 again, silently.
    flags = [*TINY, "scheduler.name=cosine", "scheduler.warmup_epochs=1", f"dataset.data_dir={data_dir}"]
    short, longer = tmp_path / "short", tmp_path / "longer"
    assert run_main(*flags, "train.epochs=2", f"train.output_dir={short}", cwd=tmp_path).returncode == 0
    assert run_main(*flags, "train.epochs=4", f"train.output_dir={longer}", cwd=tmp_path).returncode == 0
    last = short / "checkpoints" / "last.ckpt"
    rate = read_checkpoint(last)["optimizer_states"][0]["param_groups"][0]["lr"]
    resumed = run_main(*flags, "train.epochs=4", f"train.resume={last}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    [note] = [line for line in resumed.stdout.splitlines() if line.startswith("note: the schedule")]
    assert f"{rate:.4g}" in note  # from the old curve's rate, at the step reached

    def schedule(run: Path) -> tuple[int, float]:
        state = read_checkpoint(run / "checkpoints" / "last.ckpt")
        return state["lr_schedulers"][0]["last_epoch"], state["optimizer_states"][0]["param_groups"][0]["lr"]

    assert schedule(short)[0] == schedule(longer)[0] == 24  # 6 steps an epoch, 4 epochs
    assert schedule(short)[1] == pytest.approx(schedule(longer)[1], abs=1e-12)  # the same curve's end


# ----------------------------------------------------------------------------------------------------------------
# 4. A checkpoint evaluated with flags that define another network gave 8.9% silently.
# ----------------------------------------------------------------------------------------------------------------
def test_a_checkpoint_used_with_other_network_flags_is_refused_naming_each(tmp_path):
    result = run_main(
        "train.do=False",
        "pretrained.load=True",
        f"pretrained.filename={SHIPPED}",
        "conv.causal=True",
        "kernel.omega_0=60",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    [line] = result.error_lines()
    assert str(SHIPPED) in line and "kernel.omega_0=60" in line and "conv.causal=True" in line  # each flag named
    assert not any(tmp_path.iterdir())


def test_an_evaluation_must_hold_out_the_examples_the_checkpoints_run_held_out(tiny, tmp_path):
    # The validation split is drawn from the training data by the seed: evaluated with another seed (the default),
    # most "validation" examples of a seed-1 run were its training examples, and val/acc was reported as measured.
    trained = train(compose([*tiny, "seed=1"]))
    evaluate = [*tiny, "train.do=False", "pretrained.load=True", f"pretrained.filename={trained['checkpoint']}"]
    for flags, difference in (([], "seed=0 (checkpoint: 1)"), (["seed=1", "dataset.params.val_size=50"], "val_size")):
        with pytest.raises(CheckpointError) as refused:
            train(compose([*evaluate, *flags, f"train.output_dir={tmp_path / 'refused'}"]))
        assert difference in str(refused.value)
    assert not (tmp_path / "refused").exists()
    evaluated = train(compose([*evaluate, "seed=1", f"train.output_dir={tmp_path / 'eval'}"]))
    assert evaluated["val/acc"] == trained["val/acc"]


# ----------------------------------------------------------------------------------------------------------------
# 6. A failed resume with other flags overwrote the run's config.yaml, then failed with torch's size-mismatch dump.
# ----------------------------------------------------------------------------------------------------------------
def test_a_failed_resume_changes_nothing_in_the_run_folder(tiny, tmp_path):
    train(compose(tiny))
    run = tmp_path / "run"
    before = tree(run)
    config = (run / "config.yaml").read_bytes()
    with pytest.raises(CheckpointError, match=r"net\.no_hidden=12"):
        train(compose([*tiny, "net.no_hidden=12", "train.epochs=2", f"train.resume={run / 'checkpoints/last.ckpt'}"]))
    assert tree(run) == before and (run / "config.yaml").read_bytes() == config


# ----------------------------------------------------------------------------------------------------------------
# 10. Checkpoints of compiled networks did not load; a weights-only file given to train.resume raised a KeyError.
# ----------------------------------------------------------------------------------------------------------------
def test_a_run_with_train_compile_writes_checkpoints_that_load_like_eager_ones(tiny, tmp_path, monkeypatch):
    compiled = []
    original = torch.nn.Module.compile

    def compile_for_the_test(module, *args, **kwargs):
        compiled.append(type(module).__name__)
        return original(module, *args, **{**kwargs, "backend": "eager"})  # dynamo's tracing; no code generation

    monkeypatch.setattr(torch.nn.Module, "compile", compile_for_the_test)
    trained = train(compose([*tiny, "train.compile=True"]))
    assert compiled == ["CCNN"]  # the run compiled its network
    best = Path(trained["checkpoint"])
    assert not any("_orig_mod" in key for key in read_checkpoint(best)["state_dict"])
    assert not any("_orig_mod" in key for key in torch.load(best, weights_only=False)["state_dict"])  # as written
    load = ["train.do=False", "pretrained.load=True", f"pretrained.filename={best}"]
    evaluated = train(compose([*tiny, *load, f"train.output_dir={tmp_path / 'eval'}"]))  # an eager network
    assert evaluated["test/acc"] == trained["test/acc"]


def test_checkpoints_written_by_an_older_compiled_run_load_for_evaluation_and_fine_tuning(tiny, tmp_path):
    trained = train(compose(tiny))
    checkpoint = torch.load(trained["checkpoint"], weights_only=False)
    checkpoint["state_dict"] = {k.replace("net.", "net._orig_mod.", 1): v for k, v in checkpoint["state_dict"].items()}
    compiled = tmp_path / "compiled.ckpt"
    torch.save(checkpoint, compiled)
    load = ["pretrained.load=True", f"pretrained.filename={compiled}"]
    evaluated = train(compose([*tiny, *load, "train.do=False", f"train.output_dir={tmp_path / 'eval'}"]))
    assert evaluated["test/acc"] == trained["test/acc"]
    tuned = train(compose([*tiny, *load, f"train.output_dir={tmp_path / 'tune'}"]))
    assert "test/acc" in tuned


def test_a_weights_only_checkpoint_given_to_resume_points_at_pretrained(tmp_path):
    result = run_main(f"train.resume={SHIPPED}", f"train.output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.error_lines()
    assert f"pretrained.filename={SHIPPED}" in line  # the way that exists: start from its weights
    assert not any(tmp_path.iterdir())


def test_read_checkpoint_names_weights_only_files(tmp_path):
    from training.run.checkpoints import is_resumable

    assert not is_resumable(read_checkpoint(SHIPPED))


# ----------------------------------------------------------------------------------------------------------------
# A save that fails for lack of space said "[enforce fail at inline_container.cc:672] unexpected pos".
# ----------------------------------------------------------------------------------------------------------------
def _save_under_a_file_size_limit(path: Path, said: Any) -> None:
    """In a forked child (the limit must not bind this process): a checkpoint saved, then a larger one under
    ``ulimit -f``; the second save's error goes to ``said``."""
    import resource

    atomic_torch_save({"state_dict": {"w": torch.ones(10)}}, path)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    try:
        atomic_torch_save({"state_dict": {"w": torch.zeros(1_000_000)}}, path)
        said.put("saved")
    except CheckpointSaveError as error:
        said.put(str(error))


def test_a_save_that_the_system_refuses_names_the_path_and_the_cause_and_keeps_the_old_file(tmp_path):
    import multiprocessing

    path = tmp_path / "checkpoints" / "last.ckpt"
    context = multiprocessing.get_context("fork")  # torch is loaded already: no interpreter to start
    said = context.SimpleQueue()
    child = context.Process(target=_save_under_a_file_size_limit, args=(path, said))
    child.start()
    child.join(timeout=120)
    message = said.get()
    assert str(path) in message and "ulimit -f" in message, message  # the file and the cause
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], torch.ones(10))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


@pytest.fixture
def small_disk(tmp_path):
    """A 160 KiB file system (tmpfs), where the machine lets this process mount one (root in a container)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_run_whose_disk_fills_up_ends_with_one_line_naming_the_checkpoint(small_disk, data_dir):
    result = run_main(*TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={small_disk / 'run'}", cwd=small_disk)
    assert result.returncode == 1, result.stderr[-2000:]
    [line] = [line for line in error_lines(result) if line.startswith("error: ")]
    assert str(small_disk / "run" / "checkpoints") in line and "the disk is full" in line
    assert not list((small_disk / "run" / "checkpoints").glob(".*.tmp"))


# ----------------------------------------------------------------------------------------------------------------
# 7. With deterministic=True, a run killed after epoch 0 and resumed gave another epoch-1 loss than an uninterrupted
#    run: the shuffle order restarted from epoch 0's.
# ----------------------------------------------------------------------------------------------------------------
DETERMINISTIC = [
    *[f for f in TINY if not f.startswith(("train.epochs", "dataset.params."))],
    "deterministic=True",
    "train.epochs=5",
    "dataset.params.num_samples=1000",
    "dataset.params.val_size=200",
    "net.dropout=0.1",  # draws from the RNG in every step, so a wrongly restored RNG state shows
]


def epoch_rows(run: Path) -> dict[int, dict[str, str]]:
    """The last logged value of each metric per epoch (a killed epoch may be logged twice), without the measured
    times and memory, which differ from run to run."""
    import csv

    rows: dict[int, dict[str, str]] = {}
    with open(run / "logs" / "metrics.csv", newline="") as file:
        for row in csv.DictReader(file):
            if row.get("epoch"):
                measured = {k: v for k, v in row.items() if v and k != "step" and not k.startswith(MEASURED_PREFIXES)}
                rows.setdefault(int(row["epoch"]), {}).update(measured)
    return rows


def _kill_after_epoch(flags: list[str], run: Path, epoch: int) -> int:
    """Start the run, freeze it (SIGSTOP) as soon as last.ckpt holds ``epoch`` or later, kill it; return the epoch
    last.ckpt holds. The run is frozen at every new last.ckpt while it is read (a tiny epoch is shorter than reading
    a checkpoint: a run left going wrote the next ones meanwhile)."""
    import signal

    last = run / "checkpoints" / "last.ckpt"
    process = start_main_py(*flags, f"train.output_dir={run}", cwd=run.parent)
    deadline, seen = time.monotonic() + 300, None
    while time.monotonic() < deadline and process.poll() is None:
        written = last.stat().st_mtime_ns if last.is_file() else None
        if written != seen:
            process.send_signal(signal.SIGSTOP)
            seen = written
            if read_checkpoint(last)["epoch"] >= epoch:
                break
            process.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    process.send_signal(signal.SIGSTOP)
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed; make it longer"
    return int(read_checkpoint(last)["epoch"])


@pytest.mark.slow
def test_kill_and_resume_at_two_epochs_reproduces_the_uninterrupted_run_bit_for_bit(data_dir, tmp_path):
    """With the weight average on, so that its state (the average, its update count) is resumed too."""
    from concurrent.futures import ThreadPoolExecutor

    from training.callbacks.ema import RAW_WEIGHTS_KEY

    flags = [*DETERMINISTIC, f"dataset.data_dir={data_dir}", "train.ema=0.9"]
    whole, early, late = tmp_path / "whole", tmp_path / "early", tmp_path / "late"
    with ThreadPoolExecutor(max_workers=2) as pool:  # killed in processes of their own, while this one runs whole
        killed = {run: pool.submit(_kill_after_epoch, flags, run, at) for run, at in ((early, 1), (late, 3))}
        uninterrupted = run_main(*flags, f"train.output_dir={whole}", cwd=tmp_path)
        epochs = {run: future.result() for run, future in killed.items()}
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    assert epochs[early] < epochs[late] < 4, epochs  # two different epoch boundaries, both before the last (4)

    final = json.loads((whole / "results.json").read_text())
    measured = {k for k in final if k.startswith(MEASURED_PREFIXES) or k in ("run_folder", "checkpoint")}
    reference = epoch_rows(whole)
    for run in killed:
        resumed = run_main(*flags, f"train.resume={run / 'checkpoints' / 'last.ckpt'}", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        resumed_final = json.loads((run / "results.json").read_text())
        assert {k: v for k, v in resumed_final.items() if k not in measured} == {
            k: v for k, v in final.items() if k not in measured
        }
        assert epoch_rows(run) == reference
        for name in ("last.ckpt", "best.ckpt"):
            a, b = read_checkpoint(whole / "checkpoints" / name), read_checkpoint(run / "checkpoints" / name)
            for part in ("state_dict", RAW_WEIGHTS_KEY, "averaging_state"):
                assert a[part].keys() == b[part].keys()
                assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), (run, name, part)


# ----------------------------------------------------------------------------------------------------------------
# 8. A corrupt test file was noticed only after training had finished, so the run ended with no result.
# ----------------------------------------------------------------------------------------------------------------
def test_a_corrupt_test_file_is_refused_before_training_starts(tmp_path):
    from tests.fixtures.vision_files import write_mnist

    written = write_mnist(tmp_path / "data", n_train=60, n_test=20)
    test_images = written.folder / "t10k-images-idx3-ubyte"
    test_images.write_bytes(test_images.read_bytes()[:-100])
    run = tmp_path / "run"
    flags = [*TINY, "dataset.name=MNIST", "dataset.data_type=sequence", "dataset.params.val_size=10"]
    flags = [f for f in flags if not f.startswith(("dataset.params.num_samples", "dataset.params.val_size=100"))]
    result = run_main(*flags, f"dataset.data_dir={tmp_path / 'data'}", f"train.output_dir={run}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.error_lines()
    assert str(test_images) in line  # the file at fault
    assert "epoch" not in result.stdout and not run.exists()


@pytest.mark.parametrize("resuming", [False, True])
def test_a_folder_in_use_names_only_the_way_out_that_exists(tmp_path, resuming):
    # A resume continues in its run's own folder: "choose another train.output_dir" was no way out for it.
    from training.run.folder import RunLock, check_run_folder

    folder = tmp_path / "run"
    lock = RunLock(folder)
    lock.acquire(resuming=False)
    try:
        with pytest.raises(RunFolderError) as refused:
            check_run_folder(folder, resuming=resuming)
        assert ("train.output_dir" in str(refused.value)) is not resuming
    finally:
        lock.release()
