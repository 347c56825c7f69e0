"""Speech Commands v0.02 (Warden, 2018): one-second 16 kHz spoken words, as raw audio or MFCC features.

Found under ``data_dir`` in torchaudio's ``SpeechCommands/speech_commands_v0.02/`` (where downloads go), the
original CCNN code's ``SpeechCommands/`` (the archive's words extracted straight into it) or the project's earlier
``speech_commands_v0.02/``, searched in this order. Each holds::

    <word>/<speaker>_nohash_<n>.wav    16 kHz mono int16 PCM, at most 16000 samples
    validation_list.txt                one ``<word>/<file>.wav`` per line
    testing_list.txt
    _background_noise_/                (not used)

The download is torchaudio's archive, verified against the SHA-256 torchaudio records for it. A copy is complete
when every word folder holds clips and every clip of those words that the lists name is there (the lists name
every validation and test clip of the archive). WAV files are decoded with scipy: ``torchaudio.load`` needs
TorchCodec and FFmpeg in this torchaudio version.

Differences from the original code, on purpose: the official lists define the splits (train = every other clip, as
torchaudio's ``subset="training"``), so that no speaker is in two splits (the original re-split all clips 70/15/15,
stratified); clips shorter than one second are zero-padded to 16000 samples (the original dropped them).

Other sampling rates (``sample_rate``, raw audio only): the standardised 16 kHz clips are resampled with
``torchaudio.functional.resample`` (windowed-sinc, its defaults), one second becoming ``sample_rate`` samples. The
standardisation is the 16 kHz one, applied before resampling, so one input value means the same at every rate and a
model trained at one rate can be evaluated at another (``test.resolutions``).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.io import wavfile
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset
from torchaudio.datasets import speechcommands

from argcheck import InvalidArgument, PositiveInt, check_arguments
from datamodules.adapters import speech_commands_sha256
from datamodules.base import CCNNDataModule, DataError, DataMeta
from datamodules.cache import cached_tensors
from datamodules.download import download_and_extract
from datamodules.layouts import Layout

URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
SHA256 = speech_commands_sha256(URL)  # torchaudio's record of the published archive
FOLDER = "speech_commands_v0.02"
SAMPLE_RATE = 16000  # of the files
NUM_SAMPLES = SAMPLE_RATE  # one second; every clip is padded or cropped to this length
MFCC_FRAMES = 161  # 16000 samples, hop 100 (n_fft 200 // 2), centred frames

# SC10: the ten command words of the paper, in this label order.
SC10_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# All 35 words of v0.02, in alphabetical label order.
ALL_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
    "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila",
    "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)  # fmt: skip


def read_wav(path: Path) -> Tensor:
    """Read one Speech Commands clip as float32 in [-1, 1), zero-padded or cropped to 16000 samples.

    Raises:
        DataError: the file is not a readable 16 kHz mono int16 WAV (e.g. truncated).
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rate, samples = wavfile.read(path)
    except Exception as error:  # scipy raises ValueError, struct.error, EOFError, ... on broken files
        raise DataError(
            f"Cannot read WAV file {path} ({error}). Delete the folder {path.parent.parent} and download {URL} again."
        ) from error
    premature = [str(w.message) for w in caught if "prematurely" in str(w.message)]
    if premature or rate != SAMPLE_RATE or samples.dtype != np.int16 or samples.ndim != 1:
        problem = premature[0] if premature else f"rate {rate}, dtype {samples.dtype}, shape {samples.shape}"
        raise DataError(
            f"WAV file {path} is not a complete 16 kHz mono int16 clip ({problem}). Delete the folder "
            f"{path.parent.parent} and download {URL} again."
        )
    audio = torch.zeros(NUM_SAMPLES, dtype=torch.float32)
    clip = torch.from_numpy(samples[:NUM_SAMPLES].astype(np.float32) / 2**15)
    audio[: clip.numel()] = clip
    return audio


class SpeechCommandsDataModule(CCNNDataModule):
    """Speech Commands v0.02 classification, SC10 (10 words) by default or all 35 words.

    ``x`` is ``(B, 1, 16000)`` raw audio or ``(B, 20, 161)`` MFCCs, standardised per channel with the mean and
    standard deviation of the training split. Preprocessed tensors are cached under ``<data_dir>/cache``.

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed, download: see :class:`CCNNDataModule`.
        mfcc: use 20 log-mel MFCCs (n_fft 200, 64 mel bands) instead of the raw waveform.
        all_classes: classify all 35 words instead of the 10 commands of SC10.
        sample_rate: samples per second of the raw audio the model sees (16000: the files' own); raw audio only.
    """

    name = "SpeechCommands"
    source = f"{URL} (2.3 GB)"
    resolution_option = "sample_rate"

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: PositiveInt = 32,
        test_batch_size: PositiveInt | None = None,
        num_workers: int = -1,
        seed: int = 0,
        download: bool = True,
        mfcc: bool = False,
        all_classes: bool = False,
        sample_rate: PositiveInt = SAMPLE_RATE,
    ) -> None:
        super().__init__(data_dir, batch_size, test_batch_size, num_workers, seed, download)
        check_arguments(SpeechCommandsDataModule.__init__, locals())
        if mfcc and sample_rate != SAMPLE_RATE:
            raise InvalidArgument(
                "sample_rate",
                f"sample_rate={sample_rate} with mfcc=True: MFCC frames of resampled audio are other features (the "
                f"frame length is fixed in samples); resample the raw audio (mfcc=False) or keep {SAMPLE_RATE}.",
            )
        self.mfcc = mfcc
        self.sample_rate = sample_rate
        self.all_classes = all_classes
        self.words = ALL_WORDS if all_classes else SC10_WORDS
        self.mean: Tensor | None = None  # per-channel training statistics, set by setup()
        self.std: Tensor | None = None

    @property
    def meta(self) -> DataMeta:
        if self.mfcc:
            return DataMeta(data_dim=1, in_channels=20, num_classes=len(self.words), size=(MFCC_FRAMES,))
        return DataMeta(data_dim=1, in_channels=1, num_classes=len(self.words), size=(self.sample_rate,))

    def held_bytes(self, examples: int | None = None) -> int | None:
        if examples is None:
            return None  # the clips are counted from the official lists when the data is read
        # The standardised 16 kHz clips (float32) and their resampled copies, held together while resampling.
        return examples * (SAMPLE_RATE + self.sample_rate) * 4

    def resolution_refusal(self) -> str | None:
        if self.mfcc:
            return "MFCC features (mfcc=True) have no sample rate to change; evaluate raw audio (mfcc=False)"
        return None

    def layouts(self) -> list[Layout]:
        expected = ("validation_list.txt", "testing_list.txt", *self.words)
        torchaudio_root = self.data_dir / speechcommands.FOLDER_IN_ARCHIVE
        return [
            Layout("torchaudio", torchaudio_root / FOLDER, expected),
            Layout("original CCNN code's", torchaudio_root, expected),
            Layout("project's earlier", self.data_dir / FOLDER, expected),
        ]

    def fetch(self) -> None:
        # The archive has no top folder: its words go straight into torchaudio's folder.
        download_and_extract(URL, self.data_dir / f"{FOLDER}.tar.gz", self.layouts()[0].root, sha256=SHA256)

    def _split_files(self, root: Path) -> dict[str, list[str]]:
        """Relative paths ``<word>/<file>.wav`` of each split: the clips of ``words`` that the official lists name
        are the validation and test sets, all their other clips the training set (torchaudio's ``subset=``).

        Not torchaudio's ``SPEECHCOMMANDS(subset=...)``, which does the same: it reads
        ``<root>/<folder_in_archive>/<the URL's base name>``, always ending in ``speech_commands_v0.02``, so it cannot
        read the original's layout (the words straight in ``SpeechCommands/``); and it would not notice a partial
        copy (it walks whatever ``*/*.wav`` exists and never looks for the listed clips).

        Raises:
            DataError: a word folder holds no clip, or clips that the lists name are missing (a partial copy).
        """
        listed = {}
        for split, list_name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
            lines = (root / list_name).read_text().splitlines()
            listed[split] = {line.strip() for line in lines if line.strip().split("/")[0] in self.words}
        clips = {word: sorted(f"{word}/{wav.name}" for wav in (root / word).glob("*.wav")) for word in self.words}
        empty = [word for word in self.words if not clips[word]]
        # The listed clips of an empty folder are named by the folder alone.
        expected = {name for name in listed["val"] | listed["test"] if name.split("/")[0] not in empty}
        missing = sorted(expected - {name for names in clips.values() for name in names})
        splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for name in (name for word in self.words for name in clips[word]):
            splits["val" if name in listed["val"] else "test" if name in listed["test"] else "train"].append(name)
        problems = [f"the word folder {root / word} holds no clip" for word in empty]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            problems.append(
                f"{len(missing)} of the {len(expected)} clips that validation_list.txt and testing_list.txt name are "
                f"missing: {shown}"
            )
        problems += [f"the {split} split has no clip" for split, names in splits.items() if not names]
        if problems:
            raise DataError(
                f"Speech Commands under {root} is incomplete: {'; '.join(problems)}. Delete {root} and run `python -m "
                f"datamodules.prepare {self.name} --data-dir {self.data_dir}` to download {URL} again."
            )
        return splits

    def _build(self, root: Path, splits: dict[str, list[str]]) -> dict[str, Tensor]:
        data: dict[str, Tensor] = {}
        for split, names in splits.items():
            x = torch.stack([read_wav(root / name) for name in names]).unsqueeze(1)  # (N, 1, 16000)
            if self.mfcc:
                x = self._mfcc(x.squeeze(1))  # (N, 20, 161)
            data[f"x_{split}"] = x
            data[f"y_{split}"] = torch.tensor([self.words.index(n.split("/")[0]) for n in names])
        # Per-channel statistics of the training split, applied to every split.
        mean = data["x_train"].mean(dim=(0, 2), keepdim=True)
        std = data["x_train"].std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
        for split in splits:
            data[f"x_{split}"].sub_(mean).div_(std)  # in place: the raw training set alone is ~2.5 GB
        data["mean"], data["std"] = mean.flatten(), std.flatten()
        return data

    @staticmethod
    def _mfcc(audio: Tensor) -> Tensor:
        from torchaudio.transforms import MFCC

        with torch.no_grad(), warnings.catch_warnings():
            # n_fft 200 gives 101 frequency bins, too few for 64 mel bands: some bands are empty (a constant
            # log-mel floor). This is the original (and the paper's) setting, kept on purpose.
            warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
            melkwargs = {"n_fft": 200, "n_mels": 64}
            transform = MFCC(sample_rate=SAMPLE_RATE, n_mfcc=20, log_mels=True, melkwargs=melkwargs)
            return torch.cat([transform(chunk) for chunk in audio.split(4096)])

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        root = self.locate().root
        splits = self._split_files(root)
        digest = hashlib.sha256()
        for split, names in splits.items():
            for name in names:
                status = (root / name).stat()  # a replaced clip changes its size or modification time
                digest.update(f"{split}:{name}:{status.st_size}:{status.st_mtime_ns}\n".encode())
        settings = {"mfcc": self.mfcc, "all_classes": self.all_classes, "files": digest.hexdigest()}
        data = cached_tensors(self.data_dir / "cache", "speech_commands", settings, lambda: self._build(root, splits))
        if self.sample_rate != SAMPLE_RATE:  # the 16 kHz files keep their key: only other rates add one
            resampled = {**settings, "sample_rate": self.sample_rate}
            data = cached_tensors(self.data_dir / "cache", "speech_commands", resampled, lambda: self._resample(data))
        # Training-split statistics (of the 16 kHz audio), kept so that a user (or a test) can undo the standardisation.
        self.mean, self.std = data["mean"], data["std"]
        return tuple(TensorDataset(data[f"x_{split}"], data[f"y_{split}"]) for split in ("train", "val", "test"))

    def _resample(self, data: dict[str, Tensor]) -> dict[str, Tensor]:
        """The standardised 16 kHz splits resampled to ``sample_rate``: ``(N, 1, 16000)`` -> ``(N, 1, sample_rate)``."""
        from torchaudio.functional import resample

        out = {key: value for key, value in data.items() if not key.startswith("x_")}
        for key in [key for key in data if key.startswith("x_")]:
            with torch.no_grad():
                out[key] = torch.cat(
                    [resample(chunk, SAMPLE_RATE, self.sample_rate) for chunk in data[key].split(4096)]
                )
        return out
