"""Per-example predictions of the final evaluation (training/predictions.py) and of a folder of images
(``python -m training.predict``)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import TINY, compose, main_env
from tests.fixtures.vision_files import WrittenImages, write_mnist
from training.build import build_datamodule
from training.config import ConfigError, validate_config
from training.predict import check_device
from training.predictions import confusion_figure
from training.run import train


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _probabilities(row: dict[str, str]) -> list[float]:
    return [float(v) for k, v in row.items() if k.startswith("prob_")]


def predict_py(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "training.predict", *args]
    return subprocess.run(command, cwd=cwd, env=main_env(), capture_output=True, text=True, timeout=300)


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_folder_command_predicts_what_the_evaluation_did_for_the_same_images(mnist_run, tmp_path):
    run, _, written, _ = mnist_run
    folder = tmp_path / "my images"
    folder.mkdir()
    for i, image in enumerate(written.test_images):
        Image.fromarray(image[0]).save(folder / f"{i:03d}.png")  # (1, 28, 28) grey
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out" / "preds.csv"
    result = predict_py(str(run / "checkpoints" / "best.ckpt"), str(folder), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"wrote {out} ({len(written.test_images)} images)"

    mine, evaluated = _rows(out), _rows(run / "predictions" / "test.csv")
    assert [r["file"] for r in mine] == [f"{i:03d}.png" for i in range(len(evaluated))]
    assert [r["predicted"] for r in mine] == [r["predicted"] for r in evaluated]
    for a, b in zip(mine, evaluated):
        assert _probabilities(a) == pytest.approx(_probabilities(b), abs=2e-6)


@pytest.mark.slow
def test_the_folder_command_resizes_and_converts_other_images(mnist_run, tmp_path):
    run = mnist_run[0]
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(torch.randint(0, 256, (56, 40, 3), dtype=torch.uint8).numpy()).save(folder / "colour.jpg")
    out = tmp_path / "preds.csv"
    result = predict_py(str(run / "checkpoints" / "best.ckpt"), str(folder), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    [row] = _rows(out)
    assert row["file"] == "colour.jpg" and sum(_probabilities(row)) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_the_folder_command_refuses_in_one_line(mnist_run, tiny, tmp_path):
    best = str(mnist_run[0] / "checkpoints" / "best.ckpt")
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"not a png")
    train(compose(tiny))  # an MNIST-1D run: no images
    signals = str(tmp_path / "run" / "checkpoints" / "best.ckpt")
    out = ["--out", str(tmp_path / "preds.csv")]
    no_gpu = "error: --device cuda:99 but no CUDA device is visible here; use --device cpu."
    cases = [
        # --out and --device are checked before anything is read (they failed with tracebacks after the inference).
        ((best, str(empty), "--out", "/proc/preds.csv"), "error: --out /proc/preds.csv cannot be written ("),
        (
            (best, str(empty), *out, "--device", "cuda:99"),
            "error: --device cuda:99 but only " if torch.cuda.is_available() else no_gpu,
        ),
        ((best, str(tmp_path / "missing")), f"error: {tmp_path / 'missing'} is not a folder; pass a folder of images."),
        (
            (best, str(empty)),
            f"error: {empty} holds no image file (.png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp).",
        ),
        ((best, str(broken)), f"error: cannot read image {broken / 'bad.png'} ("),
        (
            (signals, str(broken)),
            f"error: checkpoint {signals} was trained on dataset.name=MNIST1D; training.predict reads images for "
            "MNIST, CIFAR10, CIFAR100 and STL10 checkpoints only.",
        ),
    ]
    for args, message in cases:
        result = predict_py(*args, *([] if "--out" in args else out), cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().startswith(message) and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "preds.csv").exists()


def test_the_device_must_be_one_this_machine_has():
    assert check_device("cpu") == torch.device("cpu")
    for name, message in [
        ("banana", r"^--device banana is not a torch device; pass cpu, cuda, cuda:<n> or mps\.$"),
        ("meta", r"^--device meta: training\.predict runs on cpu, cuda, cuda:<n> or mps\.$"),
    ]:
        with pytest.raises(ConfigError, match=message):
            check_device(name)


def test_predictions_of_a_distributed_run_are_refused_with_the_single_process_command():
    cfg = compose(["test.predictions=True", "train.distributed=True", "train.avail_gpus=2"])
    with pytest.raises(ConfigError, match=r"^test\.predictions=True writes the predictions of one process"):
        validate_config(cfg)


def test_predictions_are_off_by_default_and_no_run_writes_them_then(tiny, tmp_path):
    assert compose([]).test.predictions is False
    train(compose(tiny))
    assert not (tmp_path / "run" / "predictions").exists()
