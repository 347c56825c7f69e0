"""The checkpoint shipped in pretrained/ reproduces its recorded accuracy exactly in test-only mode."""

from __future__ import annotations

import json

import torch

from tests.conftest import SHIPPED, compose
from training.run.execute import train


def test_shipped_checkpoint_is_small_and_carries_its_config_and_metrics():
    assert SHIPPED.stat().st_size < 2 * 2**20
    checkpoint = torch.load(SHIPPED, map_location="cpu", weights_only=False)
    assert checkpoint["ccnn_config"]["dataset"]["name"] == "MNIST1D"
    assert set(checkpoint["metrics"]) == {"val/acc", "test/acc"}


def test_shipped_checkpoint_reproduces_its_test_accuracy_in_test_only_mode(data_dir, tmp_path):
    recorded = torch.load(SHIPPED, map_location="cpu", weights_only=False)["metrics"]
    metrics = train(
        compose(
            [
                "train.do=False",
                "pretrained.load=True",
                f"pretrained.filename={SHIPPED}",
                "no_workers=0",
                f"dataset.data_dir={data_dir}",
                f"train.output_dir={tmp_path / 'eval'}",
            ]
        )
    )
    assert metrics["test/acc"] == recorded["test/acc"]
    assert metrics["val/acc"] == recorded["val/acc"]
    assert "val/acc_best" not in metrics  # the best accuracy of the run that wrote it is not this evaluation's
    written = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert written["test/acc"] == recorded["test/acc"] and "val/acc_best" not in written


def test_plot_kernels_cli_draws_every_layer_of_a_checkpoint(tmp_path):
    from training.plot_kernels import main

    assert main([str(SHIPPED), "--out", str(tmp_path / "kernels.png"), "--channels", "2"]) == 0
    data = (tmp_path / "kernels.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
