"""The on-disk preprocessing cache: hits, misses on changed settings, atomic writes, corruption recovery."""

from __future__ import annotations

import pytest
import torch

from datamodules import cache
from datamodules.base import DataError
from datamodules.cache import cache_path, cached_tensors, settings_key


class CountingBuild:
    def __init__(self, value: float = 1.0) -> None:
        self.calls = 0
        self.value = value

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        return {"x": torch.full((3, 4), self.value), "y": torch.arange(3)}


def test_second_call_reads_the_cache_without_building(tmp_path):
    build = CountingBuild()
    first = cached_tensors(tmp_path, "demo", {"a": 1}, build)
    second = cached_tensors(tmp_path, "demo", {"a": 1}, build)
    assert build.calls == 1
    assert torch.equal(first["x"], second["x"]) and torch.equal(second["y"], torch.arange(3))
    assert cache_path(tmp_path, "demo", {"a": 1}).is_file()


def test_key_ignores_dict_order_but_not_values():
    assert settings_key({"a": 1, "b": [1, 2]}) == settings_key({"b": [1, 2], "a": 1})
    assert settings_key({"a": 1}) != settings_key({"a": 2})
    assert settings_key({"a": 1}) != settings_key({"a": "1"})


def test_changed_setting_rebuilds_instead_of_reading_stale_file(tmp_path):
    cached_tensors(tmp_path, "demo", {"seq_length": 8}, CountingBuild(1.0))
    build = CountingBuild(2.0)
    data = cached_tensors(tmp_path, "demo", {"seq_length": 16}, build)
    assert build.calls == 1
    assert torch.all(data["x"] == 2.0)
    assert len(list(tmp_path.glob("demo-*.pt"))) == 2


def test_format_version_is_part_of_the_key(tmp_path, monkeypatch):
    before = cache_path(tmp_path, "demo", {"a": 1})
    monkeypatch.setattr(cache, "CACHE_FORMAT_VERSION", cache.CACHE_FORMAT_VERSION + 1)
    assert cache_path(tmp_path, "demo", {"a": 1}) != before


def test_corrupt_cache_file_is_rebuilt_with_a_warning(tmp_path):
    path = cache_path(tmp_path, "demo", {"a": 1})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a torch file")
    build = CountingBuild(3.0)
    with pytest.warns(UserWarning, match="unreadable"):
        data = cached_tensors(tmp_path, "demo", {"a": 1}, build)
    assert build.calls == 1 and torch.all(data["x"] == 3.0)
    # The rebuilt file is good: the next call is a hit.
    again = CountingBuild(4.0)
    assert torch.all(cached_tensors(tmp_path, "demo", {"a": 1}, again)["x"] == 3.0)
    assert again.calls == 0


def test_cache_of_the_wrong_type_is_rebuilt(tmp_path):
    path = cache_path(tmp_path, "demo", {"a": 1})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save([torch.zeros(2)], path)
    with pytest.warns(UserWarning, match="rebuilding"):
        data = cached_tensors(tmp_path, "demo", {"a": 1}, CountingBuild(5.0))
    assert torch.all(data["x"] == 5.0)


def test_write_leaves_no_temporary_files(tmp_path):
    cached_tensors(tmp_path / "new" / "dir", "demo", {"a": 1}, CountingBuild())
    assert [p.name for p in (tmp_path / "new" / "dir").iterdir()] == [cache_path(tmp_path, "demo", {"a": 1}).name]


def test_build_must_return_a_dict_of_tensors(tmp_path):
    with pytest.raises(TypeError, match="dict of str -> Tensor"):
        cached_tensors(tmp_path, "demo", {"a": 1}, lambda: {"x": [1, 2]})
    assert not list(tmp_path.iterdir())


def test_cache_files_get_the_permissions_of_the_umask_like_other_files(tmp_path):
    # mkstemp creates 0600 files: the others sharing a lab's data folder could not read the cache and rebuilt it.
    import os
    import stat

    cached_tensors(tmp_path, "t", {"a": 1}, lambda: {"x": torch.zeros(2)})
    [written] = [p for p in tmp_path.iterdir() if p.suffix == ".pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask


def _disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_a_cache_that_cannot_be_written_is_a_warning_for_a_run_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _disk_full)
    with pytest.warns(UserWarning, match=r"Could not write cache file .*\(No space left on device\); continuing"):
        data = cached_tensors(tmp_path / "new" / "dir", "demo", {"a": 1}, CountingBuild(2.0))
    assert torch.all(data["x"] == 2.0)  # the tensors are still good
    assert not any(tmp_path.iterdir())  # neither a temporary file nor the folders made for it


def test_a_cache_that_cannot_be_written_is_an_error_where_writes_are_required(tmp_path, monkeypatch):
    """prepare's case: its line says the data was cached, so a failed write must fail it."""
    monkeypatch.setattr(torch, "save", _disk_full)
    with cache.cache_writes_required(), pytest.raises(DataError, match=r"Could not write cache file .*demo-"):
        cached_tensors(tmp_path / "new", "demo", {"a": 1}, CountingBuild())
    assert not any(tmp_path.iterdir())
    with pytest.warns(UserWarning, match="continuing without a cache"):  # after the block: a warning again
        cached_tensors(tmp_path / "new", "demo", {"a": 1}, CountingBuild())


def test_ctrl_c_while_a_cache_file_is_written_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached_tensors(tmp_path / "new", "demo", {"a": 1}, CountingBuild())
    assert not any(tmp_path.iterdir())
