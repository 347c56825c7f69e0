"""LRA Retrieval (AAN): do two papers of the ACL Anthology Network cite each other? Byte level, 2 classes.

On disk (from ``lra_release.gz``)::

    lra_release/tsv_data/new_aan_pairs.{train,eval,test}.tsv

Tab separated, no header, one pair per line: ``label  id1  id2  text1  text2``. The label is ``0``/``1`` (also
accepted as ``0.0``/``1.0``). In the release the texts are Python bytes literals (``b'...'``, with tabs and
newlines escaped, which is why a line can be split on tabs); plain text fields are read as UTF-8 as well. Each
document becomes byte ids ``byte + 1`` (0 pads), truncated or right-padded to ``seq_length``, so ``x`` is
``(2, seq_length)``. The official ``eval`` split is the validation set. The original code had no Retrieval
task.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from datamodules.base import CCNNDataModule, DataError, DataMeta
from datamodules.cache import cached_tensors
from datamodules.lra_common import (
    BYTE_VOCAB_SIZE,
    LRA_FOLDER,
    LRA_URL,
    TokenDataset,
    encode_bytes,
    ensure_lra_files,
    files_fingerprint,
)

SPLIT_FILES = {
    "train": "new_aan_pairs.train.tsv",
    "val": "new_aan_pairs.eval.tsv",
    "test": "new_aan_pairs.test.tsv",
}


def document_bytes(field: str) -> bytes:
    """The bytes of one AAN document: a ``b'...'`` literal is evaluated (safely), anything else is UTF-8."""
    if len(field) >= 3 and field[0] == "b" and field[1] in "'\"" and field[-1] == field[1]:
        value = ast.literal_eval(field)
        if isinstance(value, bytes):
            return value
    return field.encode("utf-8")


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Stream ``(line number, line)`` of a UTF-8 file (the training split is over a gigabyte)."""
    try:
        with path.open(encoding="utf-8") as handle:
            yield from enumerate(handle, start=1)
    except UnicodeDecodeError as error:
        raise DataError(
            f"AAN file {path} is not UTF-8 text ({error}). Delete it and extract {LRA_URL} again."
        ) from error


def read_aan_tsv(path: Path, seq_length: int) -> tuple[Tensor, Tensor]:
    """Read one AAN split into ``(tokens (N, 2, seq_length) int16, labels (N,) int64)``.

    Raises:
        DataError: a line does not hold five tab-separated fields, its label is not 0/1 or a text is
            malformed.
    """
    tokens, labels = [], []
    for number, line in _numbered_lines(path):
        line = line.rstrip("\r\n")
        if not line:
            continue
        fields = line.split("\t")
        try:
            if len(fields) != 5:
                raise ValueError(f"expected 5 tab-separated fields, found {len(fields)}")
            label = float(fields[0])
            if label not in (0.0, 1.0):
                raise ValueError(f"label {fields[0]!r} is not 0 or 1")
            pair = [encode_bytes(document_bytes(text), seq_length) for text in fields[3:]]
        except (ValueError, SyntaxError) as error:
            raise DataError(
                f"AAN file {path}, line {number}: {error}. Expected "
                f"'label<TAB>id1<TAB>id2<TAB>text1<TAB>text2'. Delete it and extract {LRA_URL} again."
            ) from error
        tokens.append(torch.stack(pair))
        labels.append(int(label))
    if not tokens:
        raise DataError(f"AAN file {path} holds no examples. Delete it and extract {LRA_URL} again.")
    return torch.stack(tokens), torch.tensor(labels)


class AANDataModule(CCNNDataModule):
    """LRA Retrieval: ``x`` is ``(B, 2, seq_length)`` int64 byte ids of two documents, ``y`` 1 if linked.

    Args:
        data_dir: folder that holds (or will receive) ``lra_release/``.
        batch_size: training batch size.
        test_batch_size: evaluation batch size (defaults to ``batch_size``).
        num_workers: loader worker processes; ``-1`` picks a count from the machine.
        seed: seed of the training loader's shuffling.
        download: download the LRA release (about 7.7 GB) in ``prepare_data`` when the files are missing.
        seq_length: every document is truncated or right-padded (id 0) to this many bytes.
    """

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 32,
        test_batch_size: int | None = None,
        num_workers: int = -1,
        seed: int = 0,
        download: bool = True,
        seq_length: int = 4000,
    ) -> None:
        super().__init__(data_dir, batch_size, test_batch_size, num_workers, seed, download)
        if seq_length <= 0:
            raise ValueError(f"seq_length must be positive, got {seq_length}.")
        self.seq_length = seq_length

    @property
    def meta(self) -> DataMeta:
        return DataMeta(
            data_dim=1,
            in_channels=1,
            num_classes=2,
            size=(self.seq_length,),
            vocab_size=BYTE_VOCAB_SIZE,
            paired=True,
        )

    def _files(self) -> dict[str, Path]:
        root = self.data_dir / LRA_FOLDER / "tsv_data"
        return {split: root / name for split, name in SPLIT_FILES.items()}

    def prepare_data(self) -> None:
        ensure_lra_files(self.data_dir, self._files().values(), self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        files = self._files()
        ensure_lra_files(self.data_dir, files.values(), download=False)

        def build() -> dict[str, Tensor]:
            data = {}
            for split, path in files.items():
                data[f"x_{split}"], data[f"y_{split}"] = read_aan_tsv(path, self.seq_length)
            return data

        settings = {"files": files_fingerprint(files.values()), "seq_length": self.seq_length}
        data = cached_tensors(self.data_dir / "cache", "lra_aan", settings, build)
        self.train_set = TokenDataset(data["x_train"], data["y_train"])
        self.val_set = TokenDataset(data["x_val"], data["y_val"])
        self.test_set = TokenDataset(data["x_test"], data["y_test"])
