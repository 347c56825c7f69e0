"""``train.coarse_batches``: a share of the training batches at half their side, band-limited
(``models.module.ClassificationModule.coarsened``)."""

from __future__ import annotations

import pytest
import torch

from argcheck import InvalidArgument
from ckconv.functional import resample
from models.module import ClassificationModule


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_coarse_batches_outside_zero_one_is_refused_by_name(share):
    with pytest.raises(InvalidArgument) as refused:
        ClassificationModule(torch.nn.Identity(), 2, coarse_batches=share)
    assert refused.value.argument == "coarse_batches"


def test_coarse_batches_resample_that_share_of_batches_to_half_their_side():
    x = torch.randn(2, 1, 40, 31)
    never = ClassificationModule(torch.nn.Identity(), 2)
    always = ClassificationModule(torch.nn.Identity(), 2, coarse_batches=1.0)
    assert never.coarsened(x) is x
    torch.testing.assert_close(always.coarsened(x), resample(x, (20, 16)))
    ends = ClassificationModule(torch.nn.Identity(), 2, coarse_batches=1.0, input_grid="ends")
    torch.testing.assert_close(ends.coarsened(x), resample(x, (20, 16), "ends"))
    assert not torch.allclose(ends.coarsened(x), always.coarsened(x))  # the samples sit elsewhere
    torch.manual_seed(0)
    half = ClassificationModule(torch.nn.Identity(), 2, coarse_batches=0.3)
    coarse = sum(half.coarsened(x).shape[2] == 20 for _ in range(1000))
    assert 250 < coarse < 350
