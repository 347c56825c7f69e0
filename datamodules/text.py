"""LRA Text: IMDB movie-review sentiment from the UTF-8 bytes of each review (2 classes).

On disk, the Stanford archive ``aclImdb_v1.tar.gz`` extracted into ``<data_dir>`` (or, where torchtext puts it,
into ``<data_dir>/IMDB``)::

    aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt        one review per file, UTF-8; neg = 0, pos = 1

The download is verified against the archive's MD5 as torchtext's ``IMDB`` dataset records it (Stanford publishes
none itself); a copy found on disk must hold reviews of both classes in each split.

Each review becomes byte ids ``byte + 1`` (0 pads), truncated or right-padded to ``seq_length``. The
validation set is carved from the training reviews with a seeded split; the test set is never used for model
selection (the original validated on the test set).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from argcheck import InvalidArgument, PositiveFloat, PositiveInt, check_arguments
from datamodules.base import CCNNDataModule, DataError, DataMeta, StoredDataset, seeded_split
from datamodules.cache import cached_tensors
from datamodules.download import download_and_extract
from datamodules.layouts import Layout
from datamodules.lra_common import BYTE_VOCAB_SIZE, encode_bytes, files_fingerprint

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"  # torchtext.datasets.IMDB's record of the archive
IMDB_FOLDER = "aclImdb"
LABELS = ("neg", "pos")


class IMDBDataModule(CCNNDataModule):
    """LRA Text (IMDB, byte level): ``x`` is ``(B, seq_length)`` int64 byte ids, ``y`` is 0 (neg) or 1 (pos).

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed, download: see :class:`CCNNDataModule`.
        seq_length: every review is truncated or right-padded (id 0) to this many bytes.
        val_size: validation reviews taken from the training set: a fraction if below 1 (default 10%, i.e.
            2500 of 25000), else a count.
    """

    name = "IMDB"
    source = f"{IMDB_URL} (80 MB)"

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: PositiveInt = 32,
        test_batch_size: PositiveInt | None = None,
        num_workers: int = -1,
        seed: int = 0,
        download: bool = True,
        seq_length: PositiveInt = 4096,
        val_size: PositiveFloat = 0.1,
    ) -> None:
        super().__init__(data_dir, batch_size, test_batch_size, num_workers, seed, download)
        check_arguments(IMDBDataModule.__init__, locals())  # val_size: a fraction below 1, else a count
        if val_size >= 1 and val_size != int(val_size):
            raise InvalidArgument(
                "val_size", f"val_size must be a fraction below 1 or a whole number of reviews, got {val_size!r}."
            )
        self.seq_length = seq_length
        self.val_size = val_size

    @property
    def meta(self) -> DataMeta:
        return DataMeta(data_dim=1, in_channels=1, num_classes=2, size=(self.seq_length,), vocab_size=BYTE_VOCAB_SIZE)

    def layouts(self) -> list[Layout]:
        expected = tuple(f"{split}/{label}" for split in ("train", "test") for label in LABELS)
        return [
            Layout("Stanford archive", self.data_dir / IMDB_FOLDER, expected),
            Layout("torchtext", self.data_dir / "IMDB" / IMDB_FOLDER, expected),
        ]

    def fetch(self) -> None:
        download_and_extract(IMDB_URL, self.data_dir / "aclImdb_v1.tar.gz", self.data_dir, md5=IMDB_MD5)

    def _read_split(self, root: Path, split: str) -> tuple[Tensor, Tensor]:
        tokens, labels = [], []
        for label, name in enumerate(LABELS):
            paths = sorted((root / split / name).glob("*.txt"))
            if not paths:  # training on one class "works" and learns nothing
                raise DataError(
                    f"IMDB folder {root / split / name} holds no reviews: each split needs both classes. Delete "
                    f"{root} and extract {IMDB_URL} again."
                )
            for path in paths:
                try:
                    text = path.read_bytes().decode("utf-8")
                except (OSError, UnicodeDecodeError) as error:
                    raise DataError(
                        f"Cannot read IMDB review {path} as UTF-8 ({error}). Delete {root} and extract "
                        f"{IMDB_URL} again."
                    ) from error
                tokens.append(encode_bytes(text.encode("utf-8"), self.seq_length))
                labels.append(label)
        return torch.stack(tokens), torch.tensor(labels)

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        layout = self.locate()
        root = layout.root

        def build() -> dict[str, Tensor]:
            data = {}
            for split in ("train", "test"):
                data[f"x_{split}"], data[f"y_{split}"] = self._read_split(root, split)
            return data

        files = sorted(path for folder in layout.expected for path in (root / folder).glob("*.txt"))
        # One review per file: the split is checked before the reviews are read and cached, so that a refused run
        # writes nothing into the data folder.
        n_train = sum(1 for path in files if path.parent.parent.name == "train")
        n_val = max(round(self.val_size * n_train) if self.val_size < 1 else int(self.val_size), 1)
        if not n_val < n_train:
            raise DataError(
                f"val_size={self.val_size} (flag dataset.params.val_size) holds out {n_val} of the {n_train} training "
                "reviews and leaves none to train on. Set a smaller dataset.params.val_size."
            )
        settings = {"files": files_fingerprint(files), "count": len(files), "seq_length": self.seq_length}
        data = cached_tensors(self.data_dir / "cache", "lra_imdb", settings, build)
        train, val = seeded_split(StoredDataset(data["x_train"], data["y_train"], Tensor.long), n_val, self.seed)
        return train, val, StoredDataset(data["x_test"], data["y_test"], Tensor.long)
