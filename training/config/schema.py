"""Every flag of ``main.py``, declared once: its type, default, whether null is allowed, what it feeds and what a
different value changes. Hydra's structured config (registered in the ConfigStore as ``ccnn``; cfg/config.yaml puts
the presets on top) makes OmegaConf refuse unknown flags and wrong types; everything else is derived from here
(``training.config.flags``): the constructor argument each flag feeds, the checks of choices and ranges (from the
signatures of the classes chosen), dead flags, checkpoint compatibility, did-you-mean hints.

Flag names and meanings are the original code's (README, "Differences from the original"); defaults are those of
``python main.py``, tuned for MNIST-1D. ``feeds="<component>.<argument>"`` names the constructor argument a flag's value
is passed to (components: ``training.config.components``); a flag without ``feeds`` is read by the run itself. A
null default means "not set": nothing is passed, and the constructor's own default applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from argcheck import NonNegativeFloat, NonNegativeInt, PositiveInt
from argcheck.rules import PositiveNorm
from training.config import resolvers


class Change(Enum):
    """What a different value of a flag changes; checkpoints are compared by it (``training.run.compat``)."""

    NETWORK = "the network"  # the function its weights compute: compared whenever weights are loaded
    INIT = "its initialisation"  # the initial weights only: compared when a run is resumed
    DATA = "the meaning of the data"  # what the inputs and labels are: compared whenever weights are loaded
    SPLIT = "the held-out examples"  # which examples validate: compared for an evaluation and a resume
    COURSE = "the course of a run"  # what the rest of training does: compared when a run is resumed
    NOTHING = "nothing"  # where a run writes, what it logs, how fast it runs


NETWORK, INIT, DATA, SPLIT, COURSE, NOTHING = Change


def flag(
    default: Any,
    *changes: Change,
    feeds: str | None = None,
    dead: str | None = None,
    choices: tuple[Any, ...] | str | None = None,
    rule: Any = None,
) -> Any:
    """A schema field.

    Args:
        default: the value of ``python main.py``.
        changes: what another value changes (none given: nothing).
        feeds: the constructor argument it is passed to, ``<component>.<argument>``; that argument's annotation
            then says which values it takes.
        dead: why it must stay at its default (it did nothing in the original).
        choices: the values it takes, or ``"module:NAME"`` of a registry or a list of names that holds them, where
            no constructor declares them.
        rule: an ``argcheck`` annotation (``PositiveInt``, ...) for a flag that no constructor of ours reads.
    """
    metadata = {
        "changes": frozenset(changes or (NOTHING,)),
        "feeds": feeds,
        "dead": dead,
        "choices": choices,
        "rule": rule,
    }
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class BlockConfig:
    type: str = flag("S4", NETWORK, feeds="network.block_type", choices="models.blocks:BLOCKS")
    prenorm: bool = flag(True, NETWORK, feeds="network.prenorm")


@dataclass
class NetConfig:
    type: str = flag("CCNN", choices=("CCNN", "ResNet"))  # ResNet: the original's name of the same network
    no_hidden: int = flag(64, NETWORK, feeds="network.hidden_channels")
    no_blocks: int = flag(4, NETWORK, feeds="network.num_blocks")
    no_stages: int = flag(-1, dead="the original never used it")
    data_dim: int | None = flag(None)  # null: taken from the dataset; any other value must match it
    dropout: float = flag(0.0, COURSE, feeds="network.dropout")
    dropout_in: float = flag(0.0, COURSE, feeds="network.dropout_in")
    dropout_type: str = flag("Dropout", COURSE, feeds="network.dropout_type")  # or channel dropout Dropout1d/2d/3d
    norm: str = flag("BatchNorm", NETWORK, feeds="network.norm")
    nonlinearity: str = flag("GELU", NETWORK, feeds="network.nonlinearity", choices="torch.nn.modules:__all__")
    # [[factor, n_blocks], ...]; null (or the original's [0.0]): every block at net.no_hidden
    block_width_factors: list[Any] | None = flag(None, NETWORK, feeds="network.block_width_factors")
    block: BlockConfig = field(default_factory=BlockConfig)
    downsampling: list[int] = flag([], NETWORK, feeds="network.downsampling")  # block indices followed by a max-pool
    downsampling_size: int = flag(2, NETWORK, feeds="network.downsampling_size")
    embedding: str = flag("learned", NETWORK, feeds="network.embedding")  # token inputs: learned | float
    embedding_dim: int | None = flag(None, NETWORK, feeds="network.embedding_dim")  # null: net.no_hidden


@dataclass
class KernelConfig:
    type: str = flag("MAGNet", NETWORK, feeds="conv.kernel_type")  # a name of ckconv.kernels.KERNEL_NETS
    no_hidden: int = flag(32, NETWORK, feeds="kernel.hidden_channels")
    no_layers: int = flag(3, NETWORK, feeds="kernel.num_layers")
    omega_0: float = flag(50.0, NETWORK, feeds="kernel.omega_0")
    input_scale: float = flag(0.0, dead="the original never used it")
    bias: bool = flag(True, NETWORK, feeds="kernel.bias")
    size: int | str = flag("same", NETWORK, feeds="conv.kernel_size")  # same | full | taps
    chang_initialize: bool = flag(True, INIT, feeds="conv.chang_initialize")
    init_scale: float = flag(
        1.0, INIT, feeds="conv.kernel_init_scale"
    )  # a factor on the output layer's initial weights
    # e.g. 1.0: kernel frequencies below this fraction of the training grid's Nyquist frequency (MFN kernels)
    bandlimit: float | None = flag(None, NETWORK, feeds="conv.kernel_bandlimit")
    norm: str = flag("Identity", NETWORK, feeds="kernel.norm", choices="torch.nn.modules:__all__")  # MLP kernels
    nonlinearity: str = flag("GELU", NETWORK, feeds="kernel.nonlinearity", choices="torch.nn.modules:__all__")
    # the extent of the initial Gabor centres; null: 1 (CKConv), or from mask.init_value (FlexConv)
    init_spatial_value: float | None = flag(None, INIT, feeds="kernel.init_spatial_value")
    alpha: float | None = flag(None, INIT, feeds="kernel.alpha")  # Gabor envelopes: Gamma(alpha, beta) widths
    beta: float | None = flag(None, INIT, feeds="kernel.beta")
    num_edges: int = flag(-1, dead="point-cloud convolutions are not implemented")
    bottleneck_factor: int = flag(-1, dead="point-cloud convolutions are not implemented")


@dataclass
class MaskConfig:
    type: str = flag("gaussian", dead="only the Gaussian mask exists (the original's other masks never worked)")
    init_value: float = flag(0.2, INIT, feeds="mask.init_value")
    threshold: float = flag(0.1, NETWORK, feeds="mask.threshold")
    dynamic_cropping: bool = flag(True, NETWORK, feeds="mask.dynamic_cropping")
    temperature: float = flag(0.0, dead="only the Gaussian mask exists (the original's other masks never worked)")
    learn_mean: bool = flag(False, NETWORK, feeds="mask.learn_mean")


@dataclass
class ConvConfig:
    type: str = flag("SeparableFlexConv", NETWORK, feeds="network.conv_type")  # a name of ckconv.CONV_TYPES
    causal: bool = flag(False, NETWORK, feeds="conv.causal")
    use_fft: bool | str = flag("auto", feeds="conv.use_fft")  # True | False | auto (the same numbers either way)
    bias: bool = flag(True, NETWORK, feeds="conv.bias")
    padding: str = flag("same", dead="every convolution keeps the input size")
    stride: int = flag(1, dead="strided continuous convolutions are not implemented; use net.downsampling")
    cache: bool = flag(False, dead="kernels are sampled at every forward pass; a kernel cache measured no gain")


@dataclass
class DatasetParams:
    """The datasets' own options (null: the dataset's default); each is refused by a dataset that does not take it."""

    permuted: bool | None = flag(None, DATA, feeds="data.permuted")  # MNIST: a fixed permutation of the pixels
    grayscale: bool | None = flag(None, DATA, feeds="data.grayscale")  # CIFAR-10/100: one luma channel
    mfcc: bool | None = flag(None, DATA, feeds="data.mfcc")  # SpeechCommands: MFCC features
    all_classes: bool | None = flag(None, DATA, feeds="data.all_classes")  # SpeechCommands: all 35 words
    resolution: int | None = flag(None, DATA, feeds="data.resolution")  # an image or volume side
    difficulty: str | None = flag(None, DATA, feeds="data.difficulty")  # PathFinder: easy | intermediate | hard
    seq_length: int | None = flag(None, DATA, feeds="data.seq_length")  # token tasks, MNIST-1D: samples per signal
    sample_rate: int | None = flag(None, DATA, feeds="data.sample_rate")  # SpeechCommands raw audio (Hz)
    num_samples: int | None = flag(None, SPLIT, COURSE, feeds="data.num_samples")  # generated sets: examples in all
    # validation examples carved from the training set (IMDB: also a fraction of it)
    val_size: int | float | None = flag(None, SPLIT, COURSE, feeds="data.val_size")
    data_seed: int | None = flag(None, DATA, feeds="data.data_seed")  # generated sets: the seed of the examples
    noise_padded: bool = flag(False, dead="noise-padded CIFAR is not implemented")
    memory_size: int = flag(-1, dead="the original never used it")
    drop_rate: float = flag(0.0, dead="irregularly sampled Speech Commands is not implemented")
    target_idx: int = flag(0, dead="regression tasks are not implemented")
    num_nodes: int | None = flag(None, dead="point-cloud datasets (ModelNet) are not implemented")
    metric: str = flag("MAE", dead="regression tasks are not implemented")


@dataclass
class DatasetConfig:
    name: str = flag("MNIST1D", DATA)  # a name of datamodules.DATAMODULES
    data_dir: str = flag("data", feeds="data.data_dir")  # relative to the folder main.py is started from
    data_type: str = flag("default", DATA, feeds="data.data_type")  # default | sequence (images flattened to 1D)
    augment: bool = flag(False, COURSE, feeds="data.augment")
    download: bool = flag(True, feeds="data.download")
    params: DatasetParams = field(default_factory=DatasetParams)


@dataclass
class TrainConfig:
    do: bool = flag(True)
    dry_run: bool = flag(False)  # build the model from metadata, print its summary and parameter count, exit
    mixed_precision: bool = flag(False, COURSE)  # bf16-mixed where supported, else 16-mixed (FFTs stay float32)
    epochs: int = flag(38, feeds="trainer.max_epochs", rule=PositiveInt)  # may grow when a run is resumed
    batch_size: int = flag(64, COURSE, rule=PositiveInt)
    grad_clip: float = flag(0.0, COURSE, feeds="trainer.gradient_clip_val", rule=NonNegativeFloat)  # 0: none
    max_epochs_no_improvement: int = flag(100, COURSE, feeds="early_stopping.patience", rule=NonNegativeInt)
    track_grad_norm: float | None = flag(None, rule=Optional[PositiveNorm])  # p > 0: log the gradient p-norm
    accumulate_grad_steps: int = flag(1, COURSE, feeds="trainer.accumulate_grad_batches", rule=PositiveInt)
    distributed: bool = flag(False)
    num_nodes: int = flag(1, feeds="trainer.num_nodes", rule=PositiveInt)
    avail_gpus: int = flag(-1)  # devices to use; -1: all that are visible (1 on CPU)
    resume: str | None = flag(None)  # <run>/checkpoints/last.ckpt: continue that run, in its folder
    compile: bool = flag(False)  # torch.compile the network
    skip_nonfinite: bool = flag(False, COURSE, feeds="module.skip_nonfinite")
    # the fraction of training batches run at half their side (band-limited), for a network that holds there too
    coarse_batches: float = flag(0.0, COURSE, feeds="module.coarse_batches")
    output_dir: str | None = flag(None)  # the run folder; null: outputs/<date>/<time> (multirun: its job folder)
    limit_train_batches: int | float = flag(1.0, COURSE, feeds="trainer.limit_train_batches")
    limit_val_batches: int | float = flag(1.0, COURSE, feeds="trainer.limit_val_batches")
    limit_test_batches: int | float = flag(1.0, feeds="trainer.limit_test_batches")
    ema: float | None = flag(None, COURSE, feeds="ema.decay")  # e.g. 0.999: a moving average of the weights
    ema_warmup: bool = flag(True, COURSE, feeds="ema.warmup")  # decay min(train.ema, (1 + n) / (10 + n))
    tensorboard: bool = flag(False)  # also log to TensorBoard in <run>/tensorboard


@dataclass
class OptimizerConfig:
    name: str = flag("AdamW", COURSE, feeds="optimizer.name", choices="torch.optim:__all__")  # a torch.optim class
    lr: float = flag(0.01, COURSE, feeds="optimizer.lr")
    mask_lr_ratio: float = flag(1.0, COURSE, feeds="optimizer.mask_lr_ratio")
    momentum: float | None = flag(None, COURSE, feeds="optimizer.momentum")  # SGD, RMSprop
    nesterov: bool = flag(False, COURSE, feeds="optimizer.nesterov")
    weight_decay: float = flag(0.0, COURSE, feeds="optimizer.weight_decay")
    # decoupled | ln_loss (the original's L2 penalty; how the paper was run)
    weight_decay_type: str = flag("decoupled", COURSE, feeds="optimizer.weight_decay_type")


@dataclass
class SchedulerConfig:
    # cosine | multistep | exponential | plateau | constant (also null and the original's '')
    name: str | None = flag("cosine", COURSE)
    decay_steps: int = flag(1, COURSE, feeds="schedule.decay_steps")  # multistep: epochs between decays
    factor: float = flag(0.1, COURSE, feeds="schedule.factor")  # multistep, exponential, plateau
    patience: int = flag(10, COURSE, feeds="schedule.patience")  # plateau
    warmup_epochs: int = flag(3, COURSE, feeds="schedule.warmup_epochs")
    mode: str = flag("max", COURSE, feeds="schedule.mode")  # plateau: max monitors val/acc, min val/loss


@dataclass
class TestConfig:
    batch_size_multiplier: int = flag(1, rule=PositiveInt)
    before_train: bool = flag(False)
    # the weights the run's final validation and test evaluate: last (the end of training; with train.ema, the
    # average) or best (the epoch of the highest val/acc, the original's: cfg/preset_base/paper.yaml)
    checkpoint: str = flag("last", COURSE, choices=("best", "last"))
    resolutions: list[int] | None = flag(None)  # e.g. [20,40,80,160]: also test at these resolutions
    # at each of test.resolutions but the training one, BatchNorm's statistics recomputed from the training split
    # there (no labels, no gradient); False: the training statistics everywhere
    update_bn: bool = flag(True)
    predictions: bool = flag(False)  # write <run>/predictions/{val,test}.csv and confusion matrices


@dataclass
class WandbConfig:
    project: str = flag("ccnn")
    entity: str | None = flag(None)  # null: your default W&B entity


@dataclass
class PretrainedConfig:
    load: bool = flag(False)
    alias: str = flag("best", dead="checkpoints are chosen by pretrained.filename")
    filename: str | None = flag(None)  # the checkpoint to evaluate (train.do=False) or to start training from
    unchecked: bool = flag(False)  # True: use a checkpoint that stores no config, whose flags cannot be compared


@dataclass
class Config:
    device: str = flag("auto", choices=("auto", "cuda", "gpu", "cpu"))
    debug: bool = flag(True)  # True: no W&B (local CSV logs only)
    deterministic: bool = flag(False, COURSE, feeds="trainer.deterministic")
    no_workers: int = flag(-1, feeds="data.num_workers")  # -1: a count from the machine
    seed: int = flag(0, SPLIT, COURSE, feeds="data.seed")
    comment: str | None = flag(None)  # a note on the run: printed, saved in config.yaml, sent to W&B
    net: NetConfig = field(default_factory=NetConfig)
    kernel: KernelConfig = field(default_factory=KernelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    conv: ConvConfig = field(default_factory=ConvConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    test: TestConfig = field(default_factory=TestConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    pretrained: PretrainedConfig = field(default_factory=PretrainedConfig)
    hooks_enabled: bool = flag(False, dead="the W&B hooks are replaced by the kernel-plot callback")
    hooks: list[Any] = flag([], dead="the W&B hooks are replaced by the kernel-plot callback")


ConfigStore.instance().store(name="ccnn", node=Config)
resolvers.register()
