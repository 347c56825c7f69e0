"""LRA Retrieval (AAN): do two papers of the ACL Anthology Network cite each other? Byte level, 2 classes.

On disk (from ``lra_release.gz``; see ``lra_common`` for the other layouts searched)::

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

from datamodules.base import DataError, DataMeta
from datamodules.lra_common import BYTE_VOCAB_SIZE, LRA_URL, LRASplitsDataModule, encode_bytes

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


class AANDataModule(LRASplitsDataModule):
    """LRA Retrieval: ``x`` is ``(B, 2, seq_length)`` int64 byte ids of two documents, ``y`` 1 if linked.

    Args:
        seq_length: truncate or right-pad (id 0) to this length (default 4000).
        Other arguments: see :class:`~datamodules.lra_common.LRASplitsDataModule`.
    """

    name = "AAN"
    folder = "tsv_data"
    s4_folder = "aan"
    split_files = SPLIT_FILES
    cache_name = "lra_aan"
    default_seq_length = 4000

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

    def read_split(self, path: Path) -> tuple[Tensor, Tensor]:
        return read_aan_tsv(path, self.seq_length)
