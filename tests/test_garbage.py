"""training.run.garbage: the cyclic collector pauses while a run starts and, during the run, sees only the objects the
run makes; both are undone afterwards, also when the block raises; main.py exits without the interpreter's last
collections, and without losing what exiting does."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref

import pytest
import pytorch_lightning as pl

from tests.conftest import REPO, TINY, run_main
from training.run.garbage import collection_paused, long_lived_objects_frozen


class Node:
    """An object in a reference cycle with itself: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.itself = self


def dropped_cycle() -> weakref.ref:
    """A weak reference to a cycle that nothing else refers to any more."""
    return weakref.ref(Node())


@pytest.fixture(autouse=True)
def collector_as_found():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_inside_the_block_what_it_made_is_collected_and_what_existed_before_is_not():
    before = Node()
    old = weakref.ref(before)
    with long_lived_objects_frozen():
        del before
        new = dropped_cycle()
        gc.collect()
        assert new() is None  # made in the block: collected
        assert old() is not None  # existed when the block began: frozen
    gc.collect()
    assert old() is None  # unfrozen after the block


def test_a_paused_collector_runs_for_the_frozen_block_and_is_paused_again_after_it():
    with collection_paused():
        assert not gc.isenabled()
        with long_lived_objects_frozen():
            assert gc.isenabled() and gc.get_freeze_count() > 0
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    assert gc.isenabled()


def test_a_block_inside_a_frozen_block_changes_nothing_and_the_outer_one_unfreezes():
    with long_lived_objects_frozen():
        frozen = gc.get_freeze_count()
        with long_lived_objects_frozen():
            pass
        assert gc.get_freeze_count() == frozen > 0
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("block", [collection_paused, long_lived_objects_frozen])
def test_the_collector_is_restored_when_the_block_raises(block):
    gc.enable()
    with pytest.raises(RuntimeError), block():
        raise RuntimeError("a run that fails")
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_main_py_trains_with_the_start_up_frozen_and_leaves_the_collector_as_it_found_it(
    data_dir, tmp_path, monkeypatch
):
    seen: dict[str, object] = {}
    fit = pl.Trainer.fit

    def observed_fit(trainer, *args, **kwargs):
        seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count())
        return fit(trainer, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "fit", observed_fit)
    gc.enable()
    result = run_main(*TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert seen["enabled"] is True and seen["frozen"] > 100_000  # torch, Lightning, Hydra and the run's set-up
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_exiting_without_the_final_collection_keeps_the_exit_code_atexit_handlers_and_buffered_writes(tmp_path):
    script = textwrap.dedent(
        f"""
        import atexit
        from training.run.garbage import exit_without_final_collection
        atexit.register(lambda: open({str(tmp_path / "atexit")!r}, "w").write("ran"))
        log = open({str(tmp_path / "log")!r}, "w")  # buffered, never closed by the script
        log.write("the last line")
        exit_without_final_collection(3)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "log").read_text() == "the last line"
