"""LRA ListOps: evaluate nested MIN/MAX/MEDIAN/SUM-MOD lists of digits, read as a token sequence (10 classes).

On disk (from ``lra_release.gz``)::

    lra_release/listops-1000/basic_{train,val,test}.tsv
        header ``Source\\tTarget``, then one example per line: ``( ( [MAX 2 9 ] 0 ) ... ]\\t7``

Tokens are the whitespace-separated symbols of ``Source`` with ``(`` and ``)`` dropped (they only group, the
operators already fix the tree), looked up in the fixed vocabulary ``LISTOPS_VOCAB``. The official
96k / 2k / 2k train / val / test splits are used as they are.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from datamodules.base import CCNNDataModule, DataError, DataMeta
from datamodules.cache import cached_tensors
from datamodules.lra_common import LRA_FOLDER, LRA_URL, TokenDataset, ensure_lra_files, files_fingerprint

# id = position: 0 pads, 1 stands for any symbol outside the vocabulary.
LISTOPS_VOCAB = ("<pad>", "<unk>", *"0123456789", "[MIN", "[MAX", "[MED", "[SM", "]")
_IDS = {symbol: i for i, symbol in enumerate(LISTOPS_VOCAB)}
UNK_ID = 1
SPLIT_FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}


def tokenize_listops(source: str, seq_length: int) -> Tensor:
    """Token ids (int16, right-padded with 0, truncated to ``seq_length``) of one ListOps expression."""
    symbols = [s for s in source.split() if s not in ("(", ")")][:seq_length]
    ids = torch.zeros(seq_length, dtype=torch.int16)
    ids[: len(symbols)] = torch.tensor([_IDS.get(s, UNK_ID) for s in symbols], dtype=torch.int16)
    return ids


def read_listops_tsv(path: Path, seq_length: int) -> tuple[Tensor, Tensor]:
    """Read one ``basic_*.tsv`` file into ``(tokens (N, seq_length) int16, labels (N,) int64)``.

    Raises:
        DataError: a row does not have two tab-separated fields or its target is not a digit 0-9.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip().split("\t") != ["Source", "Target"]:
        raise DataError(f"ListOps file {path} should start with the header 'Source<TAB>Target'. {_FIX}")
    tokens, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or fields[1].strip() not in tuple("0123456789"):
            raise DataError(
                f"ListOps file {path}, line {number}: expected 'expression<TAB>digit', got {line!r}. {_FIX}"
            )
        tokens.append(tokenize_listops(fields[0], seq_length))
        labels.append(int(fields[1]))
    if not tokens:
        raise DataError(f"ListOps file {path} holds no examples. {_FIX}")
    return torch.stack(tokens), torch.tensor(labels)


_FIX = f"Delete it and extract {LRA_URL} again."


class ListOpsDataModule(CCNNDataModule):
    """LRA ListOps: ``x`` is ``(B, seq_length)`` int64 token ids, ``y`` one of 10 classes.

    Args:
        data_dir: folder that holds (or will receive) ``lra_release/``.
        batch_size: training batch size.
        test_batch_size: evaluation batch size (defaults to ``batch_size``).
        num_workers: loader worker processes; ``-1`` picks a count from the machine.
        seed: seed of the training loader's shuffling.
        download: download the LRA release (about 7.7 GB) in ``prepare_data`` when the files are missing.
        seq_length: every sequence is truncated or right-padded (id 0) to this length.
    """

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 32,
        test_batch_size: int | None = None,
        num_workers: int = -1,
        seed: int = 0,
        download: bool = True,
        seq_length: int = 2048,
    ) -> None:
        super().__init__(data_dir, batch_size, test_batch_size, num_workers, seed, download)
        if seq_length <= 0:
            raise ValueError(f"seq_length must be positive, got {seq_length}.")
        self.seq_length = seq_length

    @property
    def meta(self) -> DataMeta:
        return DataMeta(
            data_dim=1, in_channels=1, num_classes=10, size=(self.seq_length,), vocab_size=len(LISTOPS_VOCAB)
        )

    def _files(self) -> dict[str, Path]:
        root = self.data_dir / LRA_FOLDER / "listops-1000"
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
                data[f"x_{split}"], data[f"y_{split}"] = read_listops_tsv(path, self.seq_length)
            return data

        settings = {"files": files_fingerprint(files.values()), "seq_length": self.seq_length}
        data = cached_tensors(self.data_dir / "cache", "lra_listops", settings, build)
        self.train_set = TokenDataset(data["x_train"], data["y_train"])
        self.val_set = TokenDataset(data["x_val"], data["y_val"])
        self.test_set = TokenDataset(data["x_test"], data["y_test"])
