"""``python -m training.predict <checkpoint.ckpt> <folder> [--out predictions.csv]``: classify your own images.

The network is rebuilt from the config stored in the checkpoint (as ``training.plot_kernels`` does) and loaded with
its ``state_dict`` (the weight average for ``train.ema`` runs). Every image file directly in ``<folder>`` (PNG,
JPEG, BMP, GIF, TIFF, WebP; sorted by name) is read by Pillow in the colour mode of the dataset the checkpoint was
trained on (grey for MNIST, RGB for CIFAR and STL-10; torchvision's own decoders are deprecated since 0.29), resized
to the dataset's stored image size when it differs (bilinear, antialiased; non-square images are stretched), and
passed through the dataset's own evaluation transform (``torchvision.transforms.v2``: the same scaling, normalisation
and flattening as its test split). The CSV holds
``file,predicted,prob_0,...,prob_<K-1>``. Only the image datasets (MNIST, CIFAR-10/100, STL-10) are supported.

Exit codes: 0 done, 2 refused (one line naming the checkpoint, folder, file, ``--out`` or ``--device``; ``--out``,
which must be a new file, and ``--device`` are checked before anything is read), 1 a write that failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms import v2

from argcheck.command_line import OneLineParser
from datamodules import DataError
from datamodules.vision import VisionDataModule
from models.module import ClassificationModule
from training.callbacks.predictions import write_predictions_csv
from training.config.checks import ConfigError
from training.tools import check_new_output, checkpoint_network, run_tool, write_new

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name.

    Raises:
        DataError: the folder does not exist or holds no image file.
    """
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; pass a folder of images.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no image file ({', '.join(IMAGE_SUFFIXES)}).")
    return files


def check_device(name: str) -> torch.device:
    """The torch device ``--device`` names, if this machine has it.

    Raises:
        ConfigError: naming ``--device``: not a device name, not cpu/cuda/mps, or not on this machine.
    """
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"--device {name} is not a torch device; pass cpu, cuda, cuda:<n> or mps.") from error
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"--device {name} but no CUDA device is visible here; use --device cpu.")
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"--device {name} but only {count} CUDA device(s) are visible (cuda:0 to cuda:{count - 1})."
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {name} but MPS is not available here; use --device cpu.")
    elif device.type != "cpu":
        raise ConfigError(f"--device {name}: training.predict runs on cpu, cuda, cuda:<n> or mps.")
    return device


def load_classifier(checkpoint_path: Path) -> tuple[ClassificationModule, VisionDataModule]:
    """The network of ``checkpoint_path`` in eval mode and the (unloaded) datamodule of its dataset.

    Raises:
        CheckpointError: the checkpoint is unreadable or stores no config.
        ConfigError: its dataset is not an image dataset.
    """
    loaded = checkpoint_network(checkpoint_path)
    module, datamodule = loaded.module, loaded.datamodule
    if not isinstance(datamodule, VisionDataModule):
        raise ConfigError(
            f"checkpoint {checkpoint_path} was trained on dataset {datamodule.name}; training.predict reads images "
            "for MNIST, CIFAR10, CIFAR100 and STL10 checkpoints only."
        )
    return module, datamodule


def read_image(path: Path, datamodule: VisionDataModule) -> Tensor:
    """``path`` as the uint8 ``(C, H, W)`` image the dataset stores (its channels and side), before its transform.

    Raises:
        DataError: the file cannot be decoded as an image.
    """
    try:
        with Image.open(path) as file:
            pixels = np.array(file.convert("L" if datamodule.channels == 1 else "RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:  # what Pillow raises for bad or truncated files
        raise DataError(f"cannot read image {path} ({error}).") from error
    image = torch.from_numpy(pixels).reshape(*pixels.shape[:2], -1).permute(2, 0, 1)  # (H, W[, C]) -> (C, H, W)
    side = datamodule.image_size
    if tuple(image.shape[-2:]) != (side, side):
        image = v2.functional.resize(image, [side, side], antialias=True)
    return image


@torch.no_grad()
def predict_folder(
    module: ClassificationModule, datamodule: VisionDataModule, files: list[Path], batch_size: int = 64
) -> tuple[Tensor, Tensor]:
    """The predicted classes ``(N,)`` and class probabilities ``(N, K)`` of ``files``, in their order."""
    transform = datamodule.evaluation_transform()  # the test split's own
    device = next(module.parameters()).device
    predicted, probabilities = [], []
    for start in range(0, len(files), batch_size):
        x = torch.stack([transform(read_image(path, datamodule)) for path in files[start : start + batch_size]])
        classes, probs = module.classify(module(x.to(device)))
        predicted.append(classes.cpu())
        probabilities.append(probs.cpu())
    return torch.cat(predicted), torch.cat(probabilities)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m training.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a .ckpt file written by main.py")
    parser.add_argument("folder", type=Path, help="a folder of image files")
    parser.add_argument("--out", type=Path, default=Path("predictions.csv"), help="a new CSV (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")

    def predict() -> int:
        check_new_output(args.out)
        device = check_device(args.device)
        files = image_files(args.folder)
        module, datamodule = load_classifier(args.checkpoint)
        predicted, probabilities = predict_folder(module.to(device), datamodule, files, args.batch_size)
        names = [p.name for p in files]
        write_new(args.out, lambda path: write_predictions_csv(path, "file", names, None, predicted, probabilities))
        print(f"wrote {args.out} ({len(files)} images)")
        return 0

    return run_tool(predict)


if __name__ == "__main__":
    sys.exit(main())
