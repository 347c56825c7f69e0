"""``python -m training.predict <checkpoint.ckpt> <folder> [--out predictions.csv]``: classify your own images.

The network is rebuilt from the config stored in the checkpoint (as ``training.plot_kernels`` does) and loaded with
its ``state_dict`` (the weight average for ``train.ema`` runs). Every image file directly in ``<folder>`` (PNG,
JPEG, BMP, GIF, TIFF, WebP; sorted by name) is read by Pillow in the colour mode of the dataset the checkpoint was
trained on (grey for MNIST, RGB for CIFAR and STL-10; torchvision's own decoders are deprecated since 0.29), resized
to the dataset's stored image size when it differs (bilinear, antialiased; non-square images are stretched), and
passed through the dataset's own evaluation transform (``torchvision.transforms.v2``: the same scaling, normalisation
and flattening as its test split). The CSV holds
``file,predicted,prob_0,...,prob_<K-1>``. Only the image datasets (MNIST, CIFAR-10/100, STL-10) are supported.

Exit codes: 0 done, 2 refused (one line naming the checkpoint, folder, file, ``--out``, ``--batch-size`` or
``--device``; the command line, ``--out`` (a new file), the folder's image files and the checkpoint's path are checked
before torch is imported, within a second, and the device before anything is read), 1 a write that failed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from argcheck.command_line import OneLineParser, positive_int
from training.tools import RequestError, check_checkpoint_path, check_new_output, run_tool, write_new

if TYPE_CHECKING:  # torch and the project's modules are imported where the work starts, after the request's checks
    import torch
    from torch import Tensor

    from datamodules.vision import VisionDataModule
    from models.module import ClassificationModule

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DEVICE_NAME = re.compile(r"(cpu|mps|cuda)(:\d+)?")


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name (by their names: nothing is read).

    Raises:
        RequestError: the folder does not exist, cannot be listed, or holds no image file.
    """
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise RequestError(f"{folder} {what}; pass a folder of images.")
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as error:
        raise RequestError(f"{folder} cannot be listed ({error.strerror or error}).") from error
    if not files:
        raise RequestError(f"{folder} holds no image file ({', '.join(IMAGE_SUFFIXES)}).")
    return files


def device_name(text: str) -> str:
    """An ``argparse`` type: a device name ``training.predict`` runs on (``cpu``, ``cuda``, ``cuda:<n>``, ``mps``),
    checked by its spelling alone; whether this machine has it is :func:`check_device`'s, once torch is loaded."""
    if DEVICE_NAME.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of cpu, cuda, cuda:<n>, mps")
    return text


def check_device(name: str) -> torch.device:
    """The torch device ``--device`` names, if this machine has it.

    Raises:
        ConfigError: naming ``--device``: not a device name, not cpu/cuda/mps, or not on this machine.
    """
    import torch

    from training.config.checks import ConfigError

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
        CheckpointError: the checkpoint is unreadable, stores no config, or holds non-finite weights.
        ConfigError: its dataset is not an image dataset.
    """
    from datamodules.vision import VisionDataModule
    from training.config.checks import ConfigError
    from training.tools import checkpoint_network

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
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import v2

    from datamodules import DataError

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


def predict_folder(
    module: ClassificationModule, datamodule: VisionDataModule, files: list[Path], batch_size: int = 64
) -> tuple[Tensor, Tensor]:
    """The predicted classes ``(N,)`` and class probabilities ``(N, K)`` of ``files``, in their order."""
    import torch

    transform = datamodule.evaluation_transform()  # the test split's own
    device = next(module.parameters()).device
    predicted, probabilities = [], []
    with torch.no_grad():
        for start in range(0, len(files), batch_size):
            x = torch.stack([transform(read_image(path, datamodule)) for path in files[start : start + batch_size]])
            classes, probs = module.classify(module(x.to(device)))
            predicted.append(classes.cpu())
            probabilities.append(probs.cpu())
    return torch.cat(predicted), torch.cat(probabilities)


def parser() -> OneLineParser:
    """The command line; its types refuse a bad number or device name before anything else is looked at."""
    parser = OneLineParser(
        prog="python -m training.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a .ckpt file written by main.py")
    parser.add_argument("folder", type=Path, help="a folder of image files")
    parser.add_argument("--out", type=Path, default=Path("predictions.csv"), help="a new CSV (default: %(default)s)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="images per forward pass (default: %(default)s)"
    )
    parser.add_argument(
        "--device", type=device_name, default="cpu", help="cpu, cuda, cuda:<n> or mps (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Classify the images of the folder named in ``argv`` into a new CSV file; the exit code (a bad command line
    exits with 2, as ``argparse`` does)."""
    args = parser().parse_args(argv)

    def predict() -> int:
        # Everything that needs no torch first, so that a mistake is refused within a second.
        check_new_output(args.out)
        files = image_files(args.folder)
        check_checkpoint_path(args.checkpoint)
        from training.callbacks.predictions import write_predictions_csv

        device = check_device(args.device)
        module, datamodule = load_classifier(args.checkpoint)
        predicted, probabilities = predict_folder(module.to(device), datamodule, files, args.batch_size)
        names = [p.name for p in files]
        write_new(args.out, lambda path: write_predictions_csv(path, "file", names, None, predicted, probabilities))
        print(f"wrote {args.out} ({len(files)} images)")
        return 0

    return run_tool(predict)


if __name__ == "__main__":
    sys.exit(main())
