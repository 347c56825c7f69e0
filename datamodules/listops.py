"""LRA ListOps: evaluate nested MIN/MAX/MEDIAN/SUM-MOD lists of digits, read as a token sequence (10 classes).

On disk (from ``lra_release.gz``; see ``lra_common`` for the other layouts searched)::

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

from datamodules.base import DataError, DataMeta
from datamodules.lra_common import LRA_URL, LRASplitsDataModule

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


class ListOpsDataModule(LRASplitsDataModule):
    """LRA ListOps: ``x`` is ``(B, seq_length)`` int64 token ids, ``y`` one of 10 classes.

    Args:
        seq_length: truncate or right-pad (id 0) to this length (default 2048).
        Other arguments: see :class:`~datamodules.lra_common.LRASplitsDataModule`.
    """

    name = "ListOps"
    folder = "listops-1000"
    s4_folder = "listops"
    split_files = SPLIT_FILES
    cache_name = "lra_listops"
    default_seq_length = 2048

    @property
    def meta(self) -> DataMeta:
        return DataMeta(
            data_dim=1, in_channels=1, num_classes=10, size=(self.seq_length,), vocab_size=len(LISTOPS_VOCAB)
        )

    def read_split(self, path: Path) -> tuple[Tensor, Tensor]:
        return read_listops_tsv(path, self.seq_length)
