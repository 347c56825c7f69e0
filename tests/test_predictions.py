"""Per-example predictions of the final evaluation (training/callbacks/predictions.py) and of a folder of images
(``python -m training.predict``, run in this process through its ``main``)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import SHIPPED, TINY, Result, compose, tree
from tests.fixtures.vision_files import WrittenImages, write_mnist
from training import predict
from training.build import build_datamodule
from training.callbacks.predictions import confusion_figure
from training.config.checks import ConfigError, check_config
from training.predict import check_device, device_name
from training.run.execute import train


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _probabilities(row: dict[str, str]) -> list[float]:
    return [float(v) for k, v in row.items() if k.startswith("prob_")]


def predict_py(*args: str) -> Result:
    """``python -m training.predict <args>``: its exit code (a bad command line exits as ``argparse`` does) and what
    it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = predict.main(list(args))
        except SystemExit as exited:
            code = exited.code
    return Result(code, out.getvalue(), err.getvalue())


MNIST_FLAGS = [
    *[f for f in TINY if not f.startswith("dataset.params.")],
    "dataset.name=MNIST",
    "dataset.params.val_size=20",
    "test.predictions=True",
]


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float], WrittenImages, list[str]]:
    """A one-epoch 2D MNIST run (fixture files) with test.predictions=True: (run folder, metrics, the files, flags)."""
    root = tmp_path_factory.mktemp("predictions")
    written = write_mnist(root / "data", n_train=80, n_test=30)
    flags = [*MNIST_FLAGS, f"dataset.data_dir={root / 'data'}"]
    metrics = train(compose([*flags, f"train.output_dir={root / 'run'}"]))
    return root / "run", metrics, written, flags


def test_the_predictions_csv_counts_the_reported_accuracy_of_each_split(mnist_run):
    run, metrics, written, flags = mnist_run
    datamodule = build_datamodule(compose(flags))
    datamodule.setup()
    for split, dataset in (("val", datamodule.val_set), ("test", datamodule.test_set)):
        rows = _rows(run / "predictions" / f"{split}.csv")
        assert [int(r["index"]) for r in rows] == list(range(len(dataset)))
        assert [int(r["label"]) for r in rows] == [int(dataset[i][1]) for i in range(len(dataset))]
        correct = sum(r["label"] == r["predicted"] for r in rows)
        assert correct / len(rows) == pytest.approx(metrics[f"{split}/acc"], abs=1e-6), split
        for row in rows:
            probabilities = _probabilities(row)
            assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1.0, abs=1e-4)
            assert int(row["predicted"]) == max(range(10), key=probabilities.__getitem__)
        assert (run / "predictions" / f"{split}_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written.test_labels.tolist() == [int(r["label"]) for r in _rows(run / "predictions" / "test.csv")]


def test_the_confusion_matrix_counts_true_against_predicted_classes_on_labelled_axes():
    labels, predicted = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 2, 0])
    fig = confusion_figure(labels, predicted, 3, "test: 6 examples")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("Predicted class", "True class", "test: 6 examples")
    image = ax.get_images()[0].get_array()
    assert image.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  # rows: true class, columns: predicted class


def test_the_folder_command_predicts_what_the_evaluation_did_for_the_same_images(mnist_run, tmp_path):
    run, _, written, _ = mnist_run
    folder = tmp_path / "my images"
    folder.mkdir()
    for i, image in enumerate(written.test_images):
        Image.fromarray(image[0]).save(folder / f"{i:03d}.png")  # (1, 28, 28) grey
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "preds.csv"
    result = predict_py(str(run / "checkpoints" / "best.ckpt"), str(folder), "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert str(out) in result.stdout

    mine, evaluated = _rows(out), _rows(run / "predictions" / "test.csv")
    assert [r["file"] for r in mine] == [f"{i:03d}.png" for i in range(len(evaluated))]
    assert [r["predicted"] for r in mine] == [r["predicted"] for r in evaluated]
    for a, b in zip(mine, evaluated):
        assert _probabilities(a) == pytest.approx(_probabilities(b), abs=2e-6)


def test_the_folder_command_resizes_and_converts_other_images(mnist_run, tmp_path):
    run = mnist_run[0]
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(torch.randint(0, 256, (56, 40, 3), dtype=torch.uint8).numpy()).save(folder / "colour.jpg")
    out = tmp_path / "preds.csv"
    result = predict_py(str(run / "checkpoints" / "best.ckpt"), str(folder), "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    [row] = _rows(out)
    assert row["file"] == "colour.jpg" and sum(_probabilities(row)) == pytest.approx(1.0, abs=1e-4)


def test_the_folder_command_refuses_in_one_line_naming_the_culprit(mnist_run, tmp_path):
    best = str(mnist_run[0] / "checkpoints" / "best.ckpt")
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"not a png")
    taken = tmp_path / "taken.csv"
    taken.write_text("another file\n")
    out = ["--out", str(tmp_path / "preds.csv")]
    cases = [
        # --out and --device are checked before anything is read (they failed with tracebacks after the inference).
        ((best, str(empty), "--out", "/proc/preds.csv"), "/proc/preds.csv"),
        ((best, str(broken), "--out", str(taken)), str(taken)),  # a file that exists is never written over
        ((best, str(broken), "--out", str(tmp_path / "no" / "p.csv")), str(tmp_path / "no")),  # no such folder
        ((best, str(broken), *out, "--device", "cuda:99"), "--device cuda:99"),  # before any image is read
        ((best, str(tmp_path / "missing")), str(tmp_path / "missing")),
        ((best, str(empty)), str(empty)),  # no image in it
        ((best, str(broken)), str(broken / "bad.png")),
        ((str(SHIPPED), str(broken)), str(SHIPPED)),  # an MNIST-1D checkpoint: signals, no images
    ]
    before = tree(tmp_path)
    for args, culprit in cases:
        result = predict_py(*args, *([] if "--out" in args else out))
        assert result.returncode == 2, (args, result.stderr[-2000:])
        [line] = result.error_lines()
        assert line.startswith("error: ") and culprit in line, line
    assert tree(tmp_path) == before  # no predictions.csv, no folder
    assert taken.read_text() == "another file\n"


def test_bad_command_lines_are_refused_in_one_line_before_any_checkpoint_is_read(tmp_path, monkeypatch):
    # Each of these took 6-7 s (torch and Lightning were imported first); now they need no torch (see
    # tests/test_export.py::test_refusals_that_need_no_torch_do_not_import_it). The checkpoint is never read: the
    # shipped one would be refused for holding no images.
    monkeypatch.chdir(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (28, 28)).save(images / "a.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "adir").mkdir()
    Path("predictions.csv").write_text("someone's predictions\n")  # the default --out
    Path("taken.csv").write_text("another file\n")
    ckpt, folder, out = str(SHIPPED), str(images), ["--out", "p.csv"]
    cases = [
        ([], "checkpoint"),
        ([ckpt], "folder"),
        ([ckpt, folder, *out, "--batch-size", "0"], "--batch-size"),
        ([ckpt, folder, *out, "--batch-size", "abc"], "--batch-size"),
        ([ckpt, folder, *out, "--device", "tpu"], "--device"),
        ([ckpt, folder, *out, "--device", "meta"], "--device"),
        ([ckpt, folder, "--outt", "p.csv"], "--outt"),  # no option is taken from an abbreviation or a typo
        ([ckpt, folder], "predictions.csv"),  # the default --out exists
        ([ckpt, folder, "--out", "taken.csv"], "taken.csv"),
        ([ckpt, folder, "--out", "nodir/p.csv"], "nodir"),
        ([ckpt, folder, "--out", "adir"], "adir"),
        ([ckpt, folder, "--out", "/proc/p.csv"], "/proc/p.csv"),
        ([ckpt, "missing", *out], "missing"),
        ([ckpt, "a_file", *out], "a_file"),
        ([ckpt, "empty", *out], "empty"),
        (["missing.ckpt", folder, *out], "missing.ckpt"),
        (["adir", folder, *out], "checkpoint adir"),
    ]
    before = tree(tmp_path)
    for argv, culprit in cases:
        result = predict_py(*argv)
        assert result.returncode == 2, (argv, result.stderr)
        [line] = result.error_lines()
        assert line.startswith("error: ") and culprit in line, (argv, line)
    assert tree(tmp_path) == before
    assert Path("predictions.csv").read_text() == "someone's predictions\n"


def test_an_image_checkpoint_with_non_finite_weights_is_refused_naming_it(mnist_run, tmp_path, monkeypatch):
    # It crashed in ckconv (a kernel size of NaN) with a 75-line traceback, exit 1.
    checkpoint = torch.load(mnist_run[0] / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    name = next(key for key, value in checkpoint["state_dict"].items() if value.is_floating_point())
    checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], float("nan"))
    broken = tmp_path / "diverged.ckpt"
    torch.save(checkpoint, broken)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (28, 28)).save(images / "a.png")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = predict_py(str(broken), str(images))
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.error_lines()
    assert str(broken) in line and name in line and "non-finite" in line, line
    assert tree(cwd) == {}  # no predictions.csv


def test_the_device_must_be_one_this_machine_has():
    assert check_device("cpu") == torch.device("cpu")
    for name in ("banana", "meta"):  # not a torch device; not one training.predict runs on
        with pytest.raises(ConfigError) as error:
            check_device(name)
        assert f"--device {name}" in str(error.value)
        with pytest.raises(argparse.ArgumentTypeError):  # the command line refuses them before torch is imported
            device_name(name)
    assert [device_name(name) for name in ("cpu", "cuda", "cuda:1", "mps")] == ["cpu", "cuda", "cuda:1", "mps"]


def test_predictions_of_a_distributed_run_are_refused():
    cfg = compose(["test.predictions=True", "train.distributed=True", "train.avail_gpus=2"])
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    assert error.value.flag == "test.predictions"


def test_predictions_are_off_by_default_and_no_run_writes_them_then(tiny, tmp_path):
    assert compose([]).test.predictions is False
    train(compose(tiny))
    assert not (tmp_path / "run" / "predictions").exists()
