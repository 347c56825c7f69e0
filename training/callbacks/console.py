"""What a researcher watches: the model's table, a live progress bar in a terminal, and on Ctrl-C the exact command
that resumes the run. Everything goes through logging, so Hydra's job log ``<run>/main.log`` keeps it."""

from __future__ import annotations

import io
import logging

import pytorch_lightning as pl
from pytorch_lightning.utilities.model_summary import ModelSummary, get_human_readable_count

log = logging.getLogger(__name__)


def model_table(module: pl.LightningModule, max_depth: int) -> str:
    """Lightning's model summary as text: each module to ``max_depth`` with its type, parameters and mode, then the
    totals. No FLOPs column: Lightning counts FLOPs only by running an example input through the model, which this
    project's modules do not define, and torch's FLOP counter skips the FFT convolutions where a CCNN spends them."""
    from rich.console import Console
    from rich.table import Table

    summary = ModelSummary(module, max_depth=max_depth)
    table = Table()
    for name, justify in (("", "right"), ("Name", "left"), ("Type", "left"), ("Params", "right"), ("Mode", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    rows = zip(summary.layer_names, summary.layer_types, summary.param_nums, summary.training_modes)
    for index, (name, kind, count, training) in enumerate(rows):
        table.add_row(str(index), name, kind, get_human_readable_count(count).strip(), "train" if training else "eval")
    text = io.StringIO()
    Console(file=text, width=120, force_terminal=False).print(table)
    trainable = get_human_readable_count(summary.trainable_parameters).strip()
    frozen = get_human_readable_count(summary.total_parameters - summary.trainable_parameters).strip()
    return f"{text.getvalue().rstrip()}\nTrainable params: {trainable}, non-trainable: {frozen}"


class ModelTable(pl.Callback):
    """Logs :func:`model_table` when fitting starts (in place of Lightning's summary, which has the FLOPs column)."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            log.info(model_table(pl_module, self.max_depth))
