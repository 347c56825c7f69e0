"""Per-example predictions of an evaluation: ``<run>/predictions/<split>.csv`` and a confusion-matrix picture.

With ``test.predictions=True`` the run's final evaluation (the best checkpoint after training, or the checkpoint of
``pretrained.filename``) writes, for the validation and the test split:

- ``<split>.csv``: one row per example in the split's order, ``index,label,predicted,prob_0,...,prob_<K-1>``; the
  predicted class is the one the accuracy counts, so the rows with ``label == predicted`` give ``<split>/acc``;
- ``<split>_confusion.png``: the confusion matrix (true class down, predicted class across), drawn by torchmetrics.

Validation inside training writes nothing: only the evaluation of the checkpoint the run reports.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor
from torchmetrics.functional.classification import multiclass_confusion_matrix

# Cells are annotated with their counts up to this many classes; beyond, the numbers would overlap.
_MAX_ANNOTATED_CLASSES = 20


def write_predictions_csv(
    path: Path, first_column: str, keys: Sequence[Any], labels: Tensor | None, predicted: Tensor, probabilities: Tensor
) -> Path:
    """Write ``<first_column>,[label,]predicted,prob_0,...`` with one row per example (probabilities to 6 digits).

    Args:
        path: the CSV file (its folder is created).
        first_column: the name of the column holding ``keys`` (``index`` for a split, ``file`` for a folder).
        keys: one identifier per example.
        labels: the true classes ``(N,)``, or ``None`` (no ``label`` column).
        predicted: the predicted classes ``(N,)``.
        probabilities: the class probabilities ``(N, K)``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [first_column, *(["label"] if labels is not None else []), "predicted"]
    header += [f"prob_{k}" for k in range(probabilities.shape[1])]
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for i, key in enumerate(keys):
            row = [key, *([int(labels[i])] if labels is not None else []), int(predicted[i])]
            writer.writerow(row + [f"{p:.6g}" for p in probabilities[i].tolist()])
    return path


def confusion_figure(labels: Tensor, predicted: Tensor, num_classes: int, title: str) -> Any:
    """A matplotlib figure of the confusion matrix of ``predicted`` against ``labels`` (true class down, predicted
    class across, counts in the cells up to 20 classes), drawn by torchmetrics."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from torchmetrics.utilities.plot import plot_confusion_matrix

    matrix = multiclass_confusion_matrix(predicted, labels, num_classes=num_classes)
    with warnings.catch_warnings():
        # torchmetrics hands matplotlib a torch tensor, whose __array__ predates numpy 2's copy argument: harmless.
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword")
        fig, ax = plot_confusion_matrix(matrix, add_text=num_classes <= _MAX_ANNOTATED_CLASSES)
    ax.set_title(title)
    return fig


def save_confusion_matrix(path: Path, labels: Tensor, predicted: Tensor, num_classes: int, title: str) -> Path:
    """Draw :func:`confusion_figure` to the PNG file ``path``."""
    import matplotlib.pyplot as plt

    fig = confusion_figure(labels, predicted, num_classes, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class PredictionWriter(pl.Callback):
    """Collects what ``validation_step``/``test_step`` return (``logits`` and ``predictions``) during
    ``trainer.validate`` and ``trainer.test`` and writes them with the labels when the split ends (see the module
    docstring). Validation inside ``fit`` is skipped.

    Args:
        folder: where ``<split>.csv`` and ``<split>_confusion.png`` go.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._batches: list[tuple[Tensor, Tensor, Tensor]] = []

    def _collect(self, trainer: pl.Trainer, outputs: Any, batch: Any) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            return
        _, y = batch
        self._batches.append((y.cpu(), outputs["predictions"].cpu(), outputs["logits"].cpu()))

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batches = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batches = []

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: int
    ) -> None:
        self._collect(trainer, outputs, batch)

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: int
    ) -> None:
        self._collect(trainer, outputs, batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            self._write("val", pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write("test", pl_module)

    def _write(self, split: str, pl_module: pl.LightningModule) -> None:
        if not self._batches:
            return
        labels = torch.cat([b[0] for b in self._batches])
        predicted = torch.cat([b[1] for b in self._batches])
        _, probabilities = pl_module.classify(torch.cat([b[2] for b in self._batches]))  # type: ignore[operator]
        self._batches = []
        write_predictions_csv(
            self.folder / f"{split}.csv", "index", range(len(labels)), labels, predicted, probabilities
        )
        accuracy = (predicted == labels).float().mean().item()
        title = f"{split}: {len(labels)} examples, accuracy {100 * accuracy:.2f}%"
        num_classes = int(pl_module.num_classes)  # type: ignore[arg-type]
        save_confusion_matrix(self.folder / f"{split}_confusion.png", labels, predicted, num_classes, title)
