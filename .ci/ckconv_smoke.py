"""ckconv and models with torch alone: a layer, both convolution paths, a CCNN and its materialised copy.

Run by ``.ci/wheel_smoke`` in a fresh virtual environment holding torch and the built wheel only (``--installed``:
the packages must come from that environment's site-packages), and by ``tests/test_packaging_install.py`` in the
project's environment, where the training stack is installed but any import of it fails (the blocker below).
"""

import importlib.abc
import sys

BLOCKED = ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf", "torchvision", "torchmetrics")


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"ckconv must not import {name}")
        return None


sys.meta_path.insert(0, _Block())

import torch  # noqa: E402

import ckconv  # noqa: E402
from ckconv import SeparableFlexConv, direct_conv, fft_conv  # noqa: E402
from ckconv.materialize import materialize_conv  # noqa: E402
from models.ccnn import CCNN  # noqa: E402
from models.materialize import materialize  # noqa: E402

if "--installed" in sys.argv and "site-packages" not in ckconv.__file__:
    sys.exit(f"ckconv was imported from {ckconv.__file__}, not from the installed wheel")
torch.manual_seed(0)
layer = SeparableFlexConv(4, 8, 1, input_size=64, causal=True).eval()
x = torch.randn(2, 4, 64)
with torch.no_grad():
    y = layer(x)
    assert y.shape == (2, 8, 64)
    assert torch.allclose(materialize_conv(layer, (64,))(x), y, atol=1e-5)
    w = torch.randn(4, 1, 31)
    assert torch.allclose(fft_conv(x, w, groups=4), direct_conv(x, w, groups=4), atol=1e-4)
    net = CCNN(3, 10, 2, (16, 16), hidden_channels=8, num_blocks=1).eval()
    images = torch.randn(2, 3, 16, 16)
    assert torch.allclose(materialize(net, (16, 16))(images), net(images), atol=1e-5)
loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
assert not loaded, loaded
where = f"torch {torch.__version__}, Python {sys.version.split()[0]}, ckconv from {ckconv.__file__}"
print(f"ckconv smoke test passed: {where}")
