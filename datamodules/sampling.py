"""The order of the training examples: a function of the seed and the epoch, so a resumed run sees the same batches.

``DataLoader(shuffle=True, generator=torch.Generator().manual_seed(seed))`` draws every epoch's order, and the base
seed of its worker processes, from the running state of that one generator. A run resumed after epoch ``k`` builds a
new loader whose generator starts from the seed again, so it trained epoch ``k + 1`` on epoch 0's order (and seeded its
workers' augmentations like epoch 0's). Here both are drawn from ``(seed, epoch)`` alone; Lightning calls
:meth:`EpochShuffle.set_epoch` before every training epoch, resumed or not.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed for ``(seed, epoch, stream)`` from NumPy's SeedSequence: well mixed, the same on every machine."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochShuffle(Sampler[int]):
    """A random permutation of ``range(num_examples)`` that depends on ``seed`` and the epoch only.

    Args:
        num_examples: size of the training set.
        seed: the run's seed.

    Attributes:
        loader_generator: give it to the DataLoader (``generator=``): the loader draws its workers' base seed from it,
            and :meth:`set_epoch` re-seeds it, so worker-side randomness is a function of (seed, epoch) too.
    """

    def __init__(self, num_examples: int, seed: int) -> None:
        if num_examples <= 0:
            raise ValueError(f"num_examples must be positive, got {num_examples}.")
        self.num_examples = num_examples
        self.seed = seed
        self.epoch = 0
        self.loader_generator = torch.Generator()
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch`` (0-based)."""
        self.epoch = epoch
        self.loader_generator.manual_seed(epoch_seed(self.seed, epoch, stream=1))

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        yield from torch.randperm(self.num_examples, generator=generator).tolist()

    def __len__(self) -> int:
        return self.num_examples
