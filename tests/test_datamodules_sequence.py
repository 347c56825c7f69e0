"""Speech Commands and the Long Range Arena datamodules, on tiny files written in the real on-disk formats."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from argcheck import InvalidArgument
from datamodules import lra_common, speech_commands
from datamodules import mnist1d as mnist1d_module
from datamodules import text as imdb_module
from datamodules.base import DataError
from datamodules.download import file_digest
from datamodules.listops import LISTOPS_VOCAB, ListOpsDataModule
from datamodules.lra_common import LRA_URL, encode_bytes
from datamodules.mnist1d import MNIST1DDataModule
from datamodules.pathfinder import PathFinderDataModule
from datamodules.retrieval import AANDataModule
from datamodules.speech_commands import URL as SC_URL
from datamodules.speech_commands import SpeechCommandsDataModule, read_wav
from datamodules.text import IMDB_URL, IMDBDataModule
from tests.fixtures.sequence_files import (
    LRA_LAYOUTS,
    SC10_WORDS,
    SPEECH_COMMANDS_FOLDERS,
    lra_folder,
    write_aan,
    write_imdb,
    write_listops,
    write_lra_release,
    write_pathfinder,
    write_speech_commands,
)
from tests.fixtures.vision_files import local_http_server


def decode_bytes(ids: torch.Tensor) -> bytes:
    """Invert ``encode_bytes``: drop the padding (id 0) and subtract 1 (the bytes, possibly truncated)."""
    return bytes((ids[ids != 0] - 1).tolist())


def _setup(dm):
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _stack(dataset):
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.stack(ys)


# ------------------------------------------------------------------------------------- Speech Commands


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    root = tmp_path_factory.mktemp("sc")
    return root, write_speech_commands(root, n_per_word=3)


def _expected_audio(samples: np.ndarray) -> torch.Tensor:
    audio = torch.zeros(16000)
    clip = torch.from_numpy(samples[:16000].astype(np.float32) / 2**15)
    audio[: len(clip)] = clip
    return audio


def test_speech_commands_uses_official_lists_and_pads_short_clips(speech):
    root, written = speech
    dm = _setup(SpeechCommandsDataModule(root, batch_size=4, num_workers=0, download=False))
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (10, 10, 10)
    assert dm.meta.in_channels == 1 and dm.meta.size == (16000,) and dm.meta.num_classes == 10
    x, y = _stack(dm.train_set)
    assert x.shape == (10, 1, 16000) and x.dtype == torch.float32 and y.dtype == torch.int64
    # Standardised with training statistics: the training split has mean 0 and std 1.
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3
    train_names = [n for w in SC10_WORDS for n in sorted(written["clips"]) if n.startswith(f"{w}/")]
    train_names = [n for n in train_names if n not in written["val"] + written["test"]]
    for i, name in enumerate(train_names):
        restored = x[i, 0] * dm.std[0] + dm.mean[0]
        torch.testing.assert_close(restored, _expected_audio(written["clips"][name]), atol=1e-5, rtol=0)
        assert y[i].item() == SC10_WORDS.index(name.split("/")[0])
    # Labels of the validation split follow the listed files.
    _, y_val = _stack(dm.val_set)
    assert y_val.tolist() == [SC10_WORDS.index(n.split("/")[0]) for n in written["val"]]


def test_read_wav_pads_and_crops_to_one_second(speech):
    _, written = speech
    for name, samples in list(written["clips"].items())[:5]:
        audio = read_wav(written["folder"] / name)
        assert audio.shape == (16000,)
        torch.testing.assert_close(audio, _expected_audio(samples), atol=0, rtol=0)


@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
def test_speech_commands_mfcc_gives_20_by_161(speech):
    from torchaudio.transforms import MFCC

    root, written = speech
    dm = _setup(SpeechCommandsDataModule(root, batch_size=4, num_workers=0, download=False, mfcc=True))
    assert dm.meta.in_channels == 20 and dm.meta.size == (161,)
    x, _ = dm.test_set[0]
    assert x.shape == (20, 161)
    mfcc = MFCC(sample_rate=16000, n_mfcc=20, log_mels=True, melkwargs={"n_fft": 200, "n_mels": 64})
    expected = mfcc(_expected_audio(written["clips"][written["test"][0]]))
    restored = x * dm.std[:, None] + dm.mean[:, None]
    torch.testing.assert_close(restored, expected, atol=1e-3, rtol=1e-4)


def test_speech_commands_all_classes_needs_every_word_folder(speech):
    root, _ = speech
    dm = SpeechCommandsDataModule(root, batch_size=4, num_workers=0, download=False, all_classes=True)
    assert dm.meta.num_classes == 35
    with pytest.raises(DataError, match="backward"):
        _setup(dm)


def test_speech_commands_missing_folder_names_every_layout_and_the_url(tmp_path):
    dm = SpeechCommandsDataModule(tmp_path, batch_size=4, num_workers=0, download=False)
    with pytest.raises(DataError) as error:
        dm.prepare_data()
    message = str(error.value)
    for layout, folder in (
        ("torchaudio", "SpeechCommands/speech_commands_v0.02"),
        ("original CCNN code's", "SpeechCommands"),
        ("project's earlier", "speech_commands_v0.02"),
    ):
        assert (
            f"the {layout} layout at {tmp_path / folder}: expects validation_list.txt, testing_list.txt, yes" in message
        )
    assert SC_URL in message and "\n" not in message


@pytest.mark.parametrize("layout", ["original", "project"])
def test_speech_commands_is_found_in_every_layout_with_the_same_tensors(tmp_path, layout, speech):
    root, _ = speech
    reference = _setup(SpeechCommandsDataModule(root, batch_size=4, num_workers=0, download=False))
    write_speech_commands(tmp_path, n_per_word=3, layout=layout)
    assert not (tmp_path / SPEECH_COMMANDS_FOLDERS["torchaudio"]).exists()
    dm = _setup(SpeechCommandsDataModule(tmp_path, batch_size=4, num_workers=0, download=False))
    assert dm.locate().root == tmp_path / SPEECH_COMMANDS_FOLDERS[layout]
    for split in ("train_set", "val_set", "test_set"):
        for a, b in zip(_stack(getattr(reference, split)), _stack(getattr(dm, split))):
            assert torch.equal(a, b)


def test_speech_commands_partial_copy_names_the_empty_word_folder_and_the_missing_listed_clips(tmp_path):
    """Every word folder exists, so the layout is found; the official lists name every clip, so a clip deleted
    from a folder that still holds others is found missing too."""
    written = write_speech_commands(tmp_path, n_per_word=3)
    folder = written["folder"]
    for wav in (folder / "yes").glob("*.wav"):
        wav.unlink()
    gone = next(name for name in written["val"] if name.startswith("no/"))
    (folder / gone).unlink()
    with pytest.raises(DataError) as info:
        _setup(SpeechCommandsDataModule(tmp_path, batch_size=4, num_workers=0, download=False))
    message = str(info.value)
    assert message.startswith(f"Speech Commands under {folder} is incomplete: the word folder {folder / 'yes'} holds")
    # yes/'s listed clips are named by their folder; of the 18 other listed clips, one is gone.
    assert f"1 of the 18 clips that validation_list.txt and testing_list.txt name are missing: {gone}." in message
    assert "\n" not in message and not (tmp_path / "cache").exists()


def test_speech_commands_cache_key_changes_when_a_clip_is_replaced_by_one_of_the_same_size(tmp_path):
    written = write_speech_commands(tmp_path, n_per_word=3)
    first = _setup(SpeechCommandsDataModule(tmp_path, batch_size=4, num_workers=0, download=False))
    name = next(n for n in sorted(written["clips"]) if n not in written["val"] + written["test"])  # a training clip
    path = written["folder"] / name
    size, mtime = path.stat().st_size, path.stat().st_mtime_ns
    samples = -written["clips"][name]  # other samples, same length: the file keeps its size
    from scipy.io import wavfile

    wavfile.write(path, 16000, samples)
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert path.stat().st_size == size
    second = _setup(SpeechCommandsDataModule(tmp_path, batch_size=4, num_workers=0, download=False))
    assert len(list((tmp_path / "cache").glob("speech_commands-*.pt"))) == 2  # built again, not read from the cache
    assert not torch.equal(_stack(first.train_set)[0], _stack(second.train_set)[0])


def test_speech_commands_truncated_wav_names_the_file(tmp_path):
    written = write_speech_commands(tmp_path, n_per_word=3)
    broken = written["folder"] / sorted(written["clips"])[-1]
    broken.write_bytes(broken.read_bytes()[:1000])
    dm = SpeechCommandsDataModule(tmp_path, batch_size=4, num_workers=0, download=False)
    with pytest.raises(DataError, match=str(broken)):
        _setup(dm)


# --------------------------------------------------------------------------------------------- ListOps


def test_listops_tokens_decode_to_the_expression(tmp_path):
    rows = write_listops(tmp_path, n=12)
    dm = _setup(ListOpsDataModule(tmp_path, batch_size=4, num_workers=0, download=False, seq_length=64))
    assert dm.meta.vocab_size == len(LISTOPS_VOCAB) and dm.meta.size == (64,) and dm.meta.num_classes == 10
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (12, 6, 6)
    for dataset, split in ((dm.train_set, "train"), (dm.val_set, "val"), (dm.test_set, "test")):
        x, y = _stack(dataset)
        assert x.dtype == torch.int64 and x.shape[1:] == (64,)
        assert y.tolist() == [target for _, target in rows[split]]
        for ids, (source, _) in zip(x, rows[split]):
            symbols = [s for s in source.split() if s not in "()"][:64]
            assert [LISTOPS_VOCAB[i] for i in ids[ids != 0]] == symbols
    batch_x, batch_y = next(iter(dm.train_dataloader()))
    assert batch_x.shape == (4, 64) and batch_x.dtype == torch.int64 and batch_y.dtype == torch.int64


def test_listops_truncates_long_sequences(tmp_path):
    rows = write_listops(tmp_path, n=4)
    dm = _setup(ListOpsDataModule(tmp_path, batch_size=2, num_workers=0, download=False, seq_length=5))
    x, _ = dm.train_set[0]
    symbols = [s for s in rows["train"][0][0].split() if s not in "()"]
    assert [LISTOPS_VOCAB[i] for i in x] == (symbols + ["<pad>"] * 5)[:5]


def test_listops_missing_folder_names_path_and_url(tmp_path):
    dm = ListOpsDataModule(tmp_path, batch_size=4, download=False)
    with pytest.raises(DataError) as error:
        dm.prepare_data()
    message = str(error.value)
    assert str(tmp_path / "lra_release" / "listops-1000") in message and LRA_URL in message and "GB" in message


def test_listops_malformed_row_names_the_file_and_line(tmp_path):
    write_listops(tmp_path, n=4)
    path = tmp_path / "lra_release" / "listops-1000" / "basic_val.tsv"
    path.write_text(path.read_text() + "( [MAX 1 2 ] )\n")
    dm = ListOpsDataModule(tmp_path, batch_size=4, download=False)
    with pytest.raises(DataError, match=rf"{path}, line 4"):
        _setup(dm)


@pytest.mark.parametrize("layout", LRA_LAYOUTS)
@pytest.mark.parametrize("task", ["listops", "aan", "pathfinder"])
def test_lra_tasks_are_found_in_the_release_nested_and_s4_layouts(tmp_path, task, layout):
    writer, cls, kwargs = {
        "listops": (write_listops, ListOpsDataModule, {"seq_length": 32}),
        "aan": (write_aan, AANDataModule, {"seq_length": 32}),
        "pathfinder": (write_pathfinder, PathFinderDataModule, {}),
    }[task]
    writer(tmp_path / "release")
    writer(tmp_path / layout, layout=layout)
    reference, dm = (
        _setup(cls(tmp_path / folder, batch_size=2, num_workers=0, download=False, **kwargs))
        for folder in ("release", layout)
    )
    assert dm.locate().name.startswith(
        {"release": "LRA release (", "nested": "LRA release extracted", "s4": "S4"}[layout]
    )
    for split in ("train_set", "val_set", "test_set"):
        for a, b in zip(_stack(getattr(reference, split)), _stack(getattr(dm, split))):
            assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------ IMDB


def test_imdb_bytes_round_trip_and_validation_comes_from_train(tmp_path):
    reviews = write_imdb(tmp_path, n=5)
    dm = _setup(IMDBDataModule(tmp_path, batch_size=2, num_workers=0, download=False, seq_length=256, val_size=2))
    assert dm.meta.vocab_size == 257 and dm.meta.num_classes == 2
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (8, 2, 10)
    # Train and val partition the training reviews; the test set is the test folder, untouched.
    indices = sorted(dm.train_set.indices + dm.val_set.indices)
    assert indices == list(range(10))
    x, y = _stack(dm.test_set)
    assert x.shape == (10, 256) and x.dtype == torch.int64 and y.tolist() == [lbl for _, lbl in reviews["test"]]
    for ids, (text, _) in zip(x, reviews["test"]):
        raw = text.encode("utf-8")
        assert decode_bytes(ids) == raw[:256]
        assert (ids[len(raw) :] == 0).all()
    x_val, y_val = dm.val_set[0]
    text, label = reviews["train"][dm.val_set.indices[0]]
    assert decode_bytes(x_val) == text.encode("utf-8")[:256] and y_val.item() == label


def test_imdb_validation_split_is_seeded(tmp_path):
    write_imdb(tmp_path, n=5)
    splits = []
    for seed in (0, 0, 1):
        dm = _setup(IMDBDataModule(tmp_path, batch_size=2, num_workers=0, download=False, seed=seed, val_size=3))
        splits.append(dm.val_set.indices)
    assert splits[0] == splits[1] and splits[0] != splits[2]


def test_imdb_missing_folder_names_path_and_url(tmp_path):
    with pytest.raises(DataError) as error:
        IMDBDataModule(tmp_path, batch_size=4, download=False).prepare_data()
    assert str(tmp_path / "aclImdb") in str(error.value) and IMDB_URL in str(error.value)


def test_imdb_invalid_utf8_names_the_file(tmp_path):
    write_imdb(tmp_path, n=2)
    bad = tmp_path / "aclImdb" / "test" / "pos" / "99_10.txt"
    bad.write_bytes(b"good start \xff\xfe broken")
    with pytest.raises(DataError, match=str(bad)):
        _setup(IMDBDataModule(tmp_path, batch_size=4, download=False, val_size=1))


@pytest.mark.parametrize("folder", ["train/neg", "test/pos"])
def test_imdb_split_without_one_class_names_the_empty_folder(tmp_path, folder):
    write_imdb(tmp_path, n=3)
    for review in (tmp_path / "aclImdb" / folder).glob("*.txt"):
        review.unlink()
    with pytest.raises(DataError) as info:
        _setup(IMDBDataModule(tmp_path, batch_size=2, num_workers=0, download=False, val_size=1))
    assert str(info.value).startswith(f"IMDB folder {tmp_path / 'aclImdb' / folder} holds no reviews: each split needs")
    assert not (tmp_path / "cache").exists()


def test_imdb_is_found_where_torchtext_extracts_it(tmp_path):
    reviews = write_imdb(tmp_path, n=3, layout="torchtext")
    dm = _setup(IMDBDataModule(tmp_path, batch_size=2, num_workers=0, download=False, seq_length=64, val_size=1))
    assert dm.locate().root == tmp_path / "IMDB" / "aclImdb"
    assert _stack(dm.test_set)[1].tolist() == [label for _, label in reviews["test"]]


@pytest.mark.parametrize(("val_size", "held_out"), [(10, 10), (11, 11), (0.99, 10)])
def test_imdb_validation_split_as_large_as_the_training_set_names_the_flag_and_caches_nothing(
    tmp_path, val_size, held_out
):
    write_imdb(tmp_path, n=5)
    dm = IMDBDataModule(tmp_path, batch_size=2, download=False, val_size=val_size)
    message = rf"^val_size={val_size} \(flag dataset\.params\.val_size\) holds out {held_out} of the 10 training"
    with pytest.raises(DataError, match=message):
        _setup(dm)
    assert not (tmp_path / "cache").exists()  # a refused run writes nothing into the data folder


def test_imdb_validation_size_above_one_must_be_a_whole_count(tmp_path):
    for val_size in (1.5, 0, -0.1, True):  # a fraction below 1 or a whole number of reviews
        with pytest.raises(InvalidArgument) as refused:
            IMDBDataModule(tmp_path, batch_size=2, download=False, val_size=val_size)
        assert refused.value.argument == "val_size"


@pytest.mark.parametrize("val_size", [0, 400, 600, True, 2.5])
def test_mnist1d_validation_split_the_training_set_cannot_spare_is_refused_before_generating(tmp_path, val_size):
    with pytest.raises(InvalidArgument) as info:  # between 1 and 399: 500 samples give 400 training examples
        MNIST1DDataModule(data_dir=tmp_path, batch_size=2, num_samples=500, val_size=val_size)
    assert info.value.argument == "val_size"
    assert list(tmp_path.iterdir()) == []  # nothing generated or cached
    from mnist1d.data import get_dataset_args

    assert get_dataset_args().train_split == mnist1d_module.TRAIN_SPLIT  # the split the check assumes


def test_setup_loads_every_split_once_whatever_the_stage(tmp_path, monkeypatch):
    write_listops(tmp_path, n=4)
    dm = ListOpsDataModule(tmp_path, batch_size=2, download=False, seq_length=16)
    dm.setup("fit")  # loads the test split as well, so a broken test file fails before training
    assert len(dm.test_set) == 2

    def fail() -> None:
        raise AssertionError("the data was loaded twice")

    monkeypatch.setattr(dm, "load_splits", fail)
    for stage in ("fit", "validate", "test", None):
        dm.setup(stage)


def test_a_corrupt_test_file_fails_setup_for_fit(tmp_path):
    write_listops(tmp_path, n=4)
    path = tmp_path / "lra_release" / "listops-1000" / "basic_test.tsv"
    path.write_text("Source\tTarget\n( [MAX 1 2 ] )\tnine\n")
    with pytest.raises(DataError, match=rf"{path}, line 2"):
        ListOpsDataModule(tmp_path, batch_size=2, download=False).setup("fit")


def test_byte_encoding_shifts_by_one_and_pads_with_zero():
    ids = encode_bytes(b"\x00A\xff", 5)
    assert ids.tolist() == [1, 66, 256, 0, 0]
    assert decode_bytes(ids) == b"\x00A\xff"


# ------------------------------------------------------------------------------------------------- AAN


def test_aan_pairs_decode_to_both_documents(tmp_path):
    pairs = write_aan(tmp_path, n=8)
    dm = _setup(AANDataModule(tmp_path, batch_size=2, num_workers=0, download=False, seq_length=128))
    assert dm.meta.paired and dm.meta.vocab_size == 257 and dm.meta.size == (128,)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (8, 4, 4)
    for dataset, split in ((dm.train_set, "train"), (dm.val_set, "val"), (dm.test_set, "test")):
        x, y = _stack(dataset)
        assert x.shape == (len(pairs[split]), 2, 128) and x.dtype == torch.int64
        assert y.tolist() == [label for label, _, _ in pairs[split]]
        for ids, (_, first, second) in zip(x, pairs[split]):
            assert decode_bytes(ids[0]) == first[:128] and decode_bytes(ids[1]) == second[:128]
    batch_x, _ = next(iter(dm.val_dataloader()))
    assert batch_x.shape == (2, 2, 128)


def test_aan_reads_plain_text_fields_too(tmp_path):
    write_aan(tmp_path, n=2)
    path = tmp_path / "lra_release" / "tsv_data" / "new_aan_pairs.test.tsv"
    path.write_text("1\tA\tB\tplain text é\tb'bytes \\xc3\\xa9'\n")
    dm = _setup(AANDataModule(tmp_path, batch_size=1, num_workers=0, download=False, seq_length=32))
    x, y = dm.test_set[0]
    assert decode_bytes(x[0]) == "plain text é".encode() and decode_bytes(x[1]) == "bytes é".encode()
    assert y.item() == 1


def test_aan_malformed_row_names_the_file(tmp_path):
    write_aan(tmp_path, n=4)
    path = tmp_path / "lra_release" / "tsv_data" / "new_aan_pairs.train.tsv"
    path.write_text(path.read_text() + "1\tonly\tthree\n")
    with pytest.raises(DataError, match=rf"{path}, line 5: expected 5 tab-separated fields"):
        _setup(AANDataModule(tmp_path, batch_size=2, download=False))


def test_aan_missing_folder_names_path_and_url(tmp_path):
    with pytest.raises(DataError) as error:
        AANDataModule(tmp_path, batch_size=2, download=False).prepare_data()
    assert "new_aan_pairs.train.tsv" in str(error.value) and LRA_URL in str(error.value)


# ------------------------------------------------------------------------------------------ Pathfinder


def test_pathfinder_images_match_the_pngs(tmp_path):
    written = write_pathfinder(tmp_path, resolution=32, difficulty="hard", n=20)
    dm = _setup(PathFinderDataModule(tmp_path, batch_size=4, num_workers=0, download=False))
    assert dm.meta.data_dim == 2 and dm.meta.size == (32, 32) and dm.meta.num_classes == 2
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (16, 2, 2)
    everything = sorted(dm.train_set.indices + dm.val_set.indices + dm.test_set.indices)
    assert everything == list(range(20))
    full = dm.train_set.dataset
    for i in (0, 13, 19):
        x, y = full[i]
        expected = torch.from_numpy(written["images"][i]).float().div(255).sub(0.5).div(0.5)
        assert x.shape == (1, 32, 32) and x.dtype == torch.float32
        torch.testing.assert_close(x[0], expected)
        assert y.item() == written["labels"][i]


def test_pathfinder_sequence_flattens_and_difficulty_picks_folder(tmp_path):
    written = write_pathfinder(tmp_path, resolution=64, difficulty="easy", n=10)
    dm = PathFinderDataModule(
        tmp_path,
        batch_size=2,
        num_workers=0,
        download=False,
        resolution=64,
        difficulty="easy",
        data_type="sequence",
    )
    assert dm.meta.data_dim == 1 and dm.meta.size == (4096,)
    _setup(dm)
    x, _ = dm.train_set.dataset[3]
    assert x.shape == (1, 4096)
    torch.testing.assert_close(x[0], torch.from_numpy(written["images"][3]).flatten().float() / 127.5 - 1)
    with pytest.raises(DataError, match="curv_contour_length_14"):
        _setup(PathFinderDataModule(tmp_path, batch_size=2, download=False, resolution=64, difficulty="hard"))


def test_pathfinder_reads_binary_npy_metadata_too(tmp_path):
    written = write_pathfinder(tmp_path, n=6, batches=1)
    metadata = written["folder"] / "metadata" / "0.npy"
    rows = [line.split() for line in metadata.read_text().splitlines()]
    metadata.unlink()
    np.save(metadata, np.array(rows))  # a real NumPy array of strings, as the generator script writes
    dm = _setup(PathFinderDataModule(tmp_path, batch_size=2, num_workers=0, download=False))
    assert dm.train_set.dataset.labels.tolist() == written["labels"]


def test_pathfinder_split_is_seeded(tmp_path):
    write_pathfinder(tmp_path, n=20)
    a, b, c = (_setup(PathFinderDataModule(tmp_path, batch_size=2, download=False, seed=s)) for s in (0, 0, 1))
    assert a.test_set.indices == b.test_set.indices and a.test_set.indices != c.test_set.indices


def test_pathfinder_missing_folder_names_path_and_url(tmp_path):
    with pytest.raises(DataError) as error:
        PathFinderDataModule(tmp_path, batch_size=2, download=False, resolution=128).prepare_data()
    assert str(tmp_path / "lra_release" / "pathfinder128" / "curv_contour_length_14") in str(error.value)
    assert LRA_URL in str(error.value)


def test_pathfinder_unreadable_png_names_the_file(tmp_path):
    written = write_pathfinder(tmp_path, n=6)
    written["paths"][4].write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=str(written["paths"][4])):
        _setup(PathFinderDataModule(tmp_path, batch_size=2, download=False))


def test_pathfinder_reads_an_image_again_once_it_changed_after_the_cache_was_built(tmp_path):
    # The cache was keyed on the metadata files alone: a replaced or truncated image went on being served from it.
    written = write_pathfinder(tmp_path, n=6)
    _setup(PathFinderDataModule(tmp_path, batch_size=2, num_workers=0, download=False))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(written["paths"][3])
    dm = _setup(PathFinderDataModule(tmp_path, batch_size=2, num_workers=0, download=False))
    assert int(dm.train_set.dataset.inputs[3].max()) == 0
    written["paths"][4].write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=str(written["paths"][4])):
        _setup(PathFinderDataModule(tmp_path, batch_size=2, download=False))
    written["paths"][4].unlink()
    with pytest.raises(DataError, match=rf"Pathfinder image {written['paths'][4]} is listed in .* but missing"):
        _setup(PathFinderDataModule(tmp_path, batch_size=2, download=False))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"resolution": 48}, "resolution"),  # the published sides only
        ({"difficulty": "medium"}, "difficulty"),
        ({"difficulty": "Easy"}, "difficulty"),
        ({"data_type": "image"}, "data_type"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_pathfinder_rejects_unknown_options_by_name(tmp_path, kwargs, argument):
    with pytest.raises(InvalidArgument) as refused:
        PathFinderDataModule(tmp_path, **kwargs)
    assert refused.value.argument == argument


# ----------------------------------------------------------------------------------------------- cache


def test_second_setup_reads_the_cache(tmp_path, monkeypatch):
    write_listops(tmp_path, n=4)
    _setup(ListOpsDataModule(tmp_path, batch_size=2, download=False, seq_length=32))
    assert len(list((tmp_path / "cache").glob("lra_listops-*.pt"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the tsv files were read again")

    monkeypatch.setattr("datamodules.listops.read_listops_tsv", fail)
    dm = _setup(ListOpsDataModule(tmp_path, batch_size=2, download=False, seq_length=32))
    assert len(dm.train_set) == 4
    with pytest.raises(AssertionError, match="read again"):  # another seq_length is another cache entry
        _setup(ListOpsDataModule(tmp_path, batch_size=2, download=False, seq_length=16))


# ------------------------------------------------------------------------------------------- downloads


def _tar_gz(archive: Path, folder: Path, top_level: bool) -> Path:
    """Pack ``folder`` like the real tarballs: under its own name, or with no top folder (Speech Commands)."""
    with tarfile.open(archive, "w:gz") as tar:
        if top_level:
            tar.add(folder, arcname=folder.name)
        else:
            for child in sorted(folder.iterdir()):
                tar.add(child, arcname=child.name)
    return archive


def test_speech_commands_download_goes_to_torchaudio_layout_verified_by_sha256(tmp_path, monkeypatch):
    written = write_speech_commands(tmp_path / "made", n_per_word=3)
    served = tmp_path / "served"
    served.mkdir()
    archive = _tar_gz(served / "speech_commands_v0.02.tar.gz", written["folder"], top_level=False)
    monkeypatch.setattr(speech_commands, "SHA256", file_digest(archive, "sha256"))
    with local_http_server(served) as server:
        monkeypatch.setattr(speech_commands, "URL", f"{server.url}/speech_commands_v0.02.tar.gz")
        dm = _setup(SpeechCommandsDataModule(tmp_path / "data", batch_size=4, num_workers=0, download=True))
        assert server.requests == ["/speech_commands_v0.02.tar.gz"]
    assert dm.locate().root == tmp_path / "data" / "SpeechCommands" / "speech_commands_v0.02"
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (10, 10, 10)


def test_speech_commands_download_with_another_sha256_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    written = write_speech_commands(tmp_path / "made", n_per_word=1)
    served = tmp_path / "served"
    served.mkdir()
    _tar_gz(served / "speech_commands_v0.02.tar.gz", written["folder"], top_level=False)
    with local_http_server(served) as server:  # the published SHA-256 (torchaudio's record) stays in place
        monkeypatch.setattr(speech_commands, "URL", f"{server.url}/speech_commands_v0.02.tar.gz")
        dm = SpeechCommandsDataModule(tmp_path / "data", batch_size=4, num_workers=0, download=True)
        with pytest.raises(DataError, match=f"sha256 .*, expected {speech_commands.SHA256}"):
            dm.prepare_data()
    assert not (tmp_path / "data").exists()  # not even the folder the download made


def test_imdb_download_is_verified_by_md5(tmp_path, monkeypatch):
    write_imdb(tmp_path / "made", n=2)
    served = tmp_path / "served"
    served.mkdir()
    archive = _tar_gz(served / "aclImdb_v1.tar.gz", tmp_path / "made" / "aclImdb", top_level=True)
    with local_http_server(served) as server:
        monkeypatch.setattr(imdb_module, "IMDB_URL", f"{server.url}/aclImdb_v1.tar.gz")
        dm = IMDBDataModule(tmp_path / "data", batch_size=2, num_workers=0, val_size=1, seq_length=16)
        with pytest.raises(DataError, match=f"md5 .*, expected {imdb_module.IMDB_MD5}"):
            dm.prepare_data()
        assert not (tmp_path / "data").exists()  # not even the folder the download made
        monkeypatch.setattr(imdb_module, "IMDB_MD5", file_digest(archive, "md5"))
        _setup(dm)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (3, 1, 4)


@pytest.fixture
def lra_release_server(tmp_path, monkeypatch):
    """A local server holding a small LRA release (ListOps, AAN, one Pathfinder folder), with the release checks
    set to its contents."""
    served = tmp_path / "served"
    monkeypatch.setattr(lra_common, "RELEASE_LINES", write_lra_release(tmp_path / "made", served / "lra_release.gz"))
    monkeypatch.setattr(lra_common, "PATHFINDER_SETS", ((32, "hard"),))
    with local_http_server(served) as server:
        monkeypatch.setattr(lra_common, "LRA_URL", f"{server.url}/lra_release.gz")
        yield server


def test_lra_download_fetches_extracts_and_checks_the_release(tmp_path, lra_release_server, capsys):
    dm = _setup(ListOpsDataModule(tmp_path / "data", batch_size=2, num_workers=0, seq_length=16))
    assert lra_release_server.requests == ["/lra_release.gz"]
    assert "7.7 GB" in capsys.readouterr().out
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (4, 2, 2)
    # The other tasks find the same release without another download.
    _setup(PathFinderDataModule(tmp_path / "data", batch_size=2, num_workers=0))
    assert lra_release_server.requests == ["/lra_release.gz"]


def test_a_refused_lra_release_is_checked_before_it_is_moved_into_place_and_leaves_nothing(
    tmp_path, lra_release_server, monkeypatch
):
    lines = dict(lra_common.RELEASE_LINES)
    lines["tsv_data/new_aan_pairs.test.tsv"] += 1
    monkeypatch.setattr(lra_common, "RELEASE_LINES", lines)
    (tmp_path / "sandbox").mkdir()
    with pytest.raises(DataError, match=r"tsv_data/new_aan_pairs\.test\.tsv has 2 non-empty lines, the release 3\."):
        AANDataModule(tmp_path / "sandbox" / "data", batch_size=2, num_workers=0).prepare_data()
    # No lra_release/ (it would be found complete by the next run), no archive (it would be extracted again), no
    # temporary folder, not even the data folder the download created.
    assert list((tmp_path / "sandbox").iterdir()) == []


def test_lra_release_check_names_every_missing_task_folder(tmp_path):
    write_listops(tmp_path, n=4)
    problems = lra_common.release_problems(tmp_path / "lra_release")
    assert "tsv_data/new_aan_pairs.train.tsv is missing" in problems
    assert "listops-1000/basic_train.tsv has 5 non-empty lines, the release 96001" in problems
    assert "pathfinder256/curv_baseline lacks metadata/*.npy or imgs/" in problems
    assert len(problems) == 3 + 3 + 12 - 0  # AAN's 3 files, ListOps' 3 counts, the 12 Pathfinder folders


@pytest.mark.parametrize("layout", LRA_LAYOUTS)
@pytest.mark.parametrize(
    ("task", "cls", "name"),
    [("listops", ListOpsDataModule, "basic_train.tsv"), ("aan", AANDataModule, "new_aan_pairs.train.tsv")],
)
def test_a_truncated_lra_file_found_on_disk_is_refused_before_training(tmp_path, layout, task, cls, name):
    """Cut at a row boundary, the file still parses: the row count of the release (here the fixture's, through
    the test hook) is what catches it."""
    writer, release_folder, s4_folder = {
        "listops": (write_listops, "listops-1000", "listops"),
        "aan": (write_aan, "tsv_data", "aan"),
    }[task]
    writer(tmp_path, n=8, layout=layout)
    path = lra_folder(tmp_path, release_folder, s4_folder, layout) / name
    rows = path.read_text().splitlines()
    path.write_text("\n".join(rows[:-3]) + "\n")
    with pytest.raises(DataError) as info:
        _setup(cls(tmp_path, batch_size=2, num_workers=0, download=False, seq_length=16))
    assert str(info.value).startswith(
        f"LRA files truncated or not the published ones: {path} has {len(rows) - 3} non-empty lines, the release "
        f"{len(rows)}. Delete them"
    )
    assert not (tmp_path / "cache").exists()


def test_the_lra_row_counts_of_the_release_apply_to_files_the_test_hook_does_not_list(tmp_path, monkeypatch):
    write_listops(tmp_path, n=4)
    monkeypatch.delenv(lra_common.FIXTURE_LINES)
    with pytest.raises(DataError, match=r"basic_train\.tsv has 5 non-empty lines, the release 96001;"):
        _setup(ListOpsDataModule(tmp_path, batch_size=2, num_workers=0, download=False, seq_length=16))


# ------------------------------------------------------------------------------------ argument errors
@pytest.mark.parametrize(
    ("flags", "flag", "by_the_datamodule"),
    [
        (["train.batch_size=0"], "train.batch_size", False),  # a count the config checks refuse themselves
        (["dataset.params.val_size=0"], "dataset.params.val_size", True),
        (["dataset.params.val_size=4000"], "dataset.params.val_size", True),  # 5000 samples: 4000 for training
        (["dataset.name=CIFAR10", "dataset.params.resolution=0"], "dataset.params.resolution", True),
        (["dataset.name=MNIST", "dataset.augment=True"], "dataset.augment", True),
        (
            ["dataset.name=SpeechCommands", "dataset.params.mfcc=True", "dataset.params.sample_rate=8000"],
            "dataset.params.sample_rate",
            True,
        ),
        (["dataset.name=PathFinder", "dataset.params.difficulty=medium"], "dataset.params.difficulty", True),
        (["dataset.name=OrganMNIST3D", "dataset.params.resolution=32"], "dataset.params.resolution", True),
        (["dataset.name=IMDB", "dataset.params.seq_length=0"], "dataset.params.seq_length", True),
    ],
)
def test_a_datamodule_argument_error_names_the_flag_the_value_came_from(flags, flag, by_the_datamodule):
    """The datamodules name their own arguments (InvalidArgument); training.build puts the flag in their place. The
    config checks that main.py runs before building refuse some values first, naming the same flag."""
    from training.build import build_datamodule
    from training.config.checks import ConfigError, check_config
    from training.config.compose import compose

    cfg = compose(flags)
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
        build_datamodule(cfg)
    assert info.value.flag == flag
    if by_the_datamodule:
        with pytest.raises(ConfigError) as built:
            build_datamodule(cfg)
        assert built.value.flag == flag
        assert isinstance(built.value.__cause__, InvalidArgument)
