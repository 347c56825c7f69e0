"""The training order is a function of (seed, epoch): the same after a resume, different from epoch to epoch."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from datamodules.sampling import EpochShuffle, epoch_seed


def orders(loader: DataLoader, epochs: range) -> list[list[int]]:
    result = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)  # what Lightning does before every training epoch
        result.append([int(i) for (x,) in loader for i in x])
    return result


def loader(seed: int) -> DataLoader:
    order = EpochShuffle(20, seed)
    return DataLoader(TensorDataset(torch.arange(20)), batch_size=5, sampler=order, generator=order.loader_generator)


def test_an_epoch_has_the_same_order_whether_or_not_earlier_epochs_ran():
    uninterrupted = orders(loader(3), range(5))
    resumed = orders(loader(3), range(3, 5))  # a new loader, as a resumed run builds
    assert resumed == uninterrupted[3:]
    assert all(sorted(order) == list(range(20)) for order in uninterrupted)
    assert len({tuple(order) for order in uninterrupted}) == 5  # a new order every epoch


def test_the_worker_base_seed_depends_on_seed_and_epoch_only():
    def base_seed(seed: int, epoch: int) -> int:
        data = loader(seed)
        data.sampler.set_epoch(epoch)
        return iter(data)._base_seed

    assert base_seed(3, 2) == base_seed(3, 2)
    assert len({base_seed(3, 1), base_seed(3, 2), base_seed(4, 2)}) == 3


def test_a_plain_shuffling_loader_restarts_its_order_when_rebuilt():
    """Why EpochShuffle exists: torch's own shuffle draws each epoch from one running generator, which a resumed run
    cannot restore (it rebuilds the loader), so its epoch 1 repeats the uninterrupted run's epoch 0."""

    def plain() -> DataLoader:
        data = TensorDataset(torch.arange(20))
        return DataLoader(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(3))

    running = plain()
    epochs = [[int(i) for (x,) in running for i in x] for _ in range(2)]
    rebuilt = [int(i) for (x,) in plain() for i in x]
    assert rebuilt == epochs[0] != epochs[1]


def test_epoch_seeds_are_distinct_and_fit_torch_manual_seed():
    seeds = {epoch_seed(s, e, k) for s in range(3) for e in range(50) for k in range(2)}
    assert len(seeds) == 300 and all(0 <= s < 2**63 for s in seeds)
