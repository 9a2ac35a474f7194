"""The training config, typed: one frozen dataclass per section, parsed and checked once at the entry point.

Recipes (`configs/*.py`) and the command line work on an ml_collections ConfigDict
(`pggan.training.defaults.default_config()`), so every field can be overridden with `--config.<section>.<field>`.
`TrainingConfig.parse` turns that ConfigDict (or a checkpoint's saved JSON) into a `TrainingConfig`,
checking every field; everything below the entry point takes the typed object. Each field is
defined once: its default (the official PGGAN v2 setting unless its help says otherwise), its
one-line meaning and its checks live in the section's dataclass. Checks that involve the device
count (minibatch splits) are in `pggan.training.validation`.

Sections: model (`networks.ModelSpec`), dataset, schedule, loss (`losses.LossConfig`),
d_normalization (`normalization.NormalizationConfig`), optimizer, ema, checkpoint, samples, metrics,
augment (`diff_augment.AugmentConfig`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from pggan import metrics
from pggan.config_section import (
    from_section,
    help_of,
    is_int_at_least,
    is_number_at_least,
    is_power_of_two,
    require,
    resolution_table,
    setting,
)
from pggan.data.device_dataset import ON_DEVICE_MODES
from pggan.data.diff_augment import AugmentConfig
from pggan.errors import UserError
from pggan.model import losses, networks, normalization
from pggan.sampling import latent_space
from pggan.training import optimizers

# Official tick lengths (kimg) per resolution.
TICK_KIMG = {4: 160, 8: 140, 16: 120, 32: 100, 64: 80, 128: 60, 256: 40, 512: 20, 1024: 10}


class ConfigError(UserError):
    """An impossible or inconsistent setting; the message names the field and the fix."""


def _set(obj, name: str, value) -> None:
    """Normalises a field of a frozen dataclass in its __post_init__."""
    object.__setattr__(obj, name, value)


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """The training data: a prepared dataset (`tools/prepare_dataset.py`) and how it is read."""

    name: str = setting("digits", "prepared dataset name inside data_dir")
    data_dir: str = setting("", "where prepared datasets live; '' = $TFDS_DATA_DIR or ~/tensorflow_datasets")
    source: str = setting(
        "digits",
        "what to prepare the dataset from when it is missing ('' = never): digits, "
        "synthetic, folder:<path> or tfds:<name> (see tools/prepare_dataset.py)",
    )
    max_images: int = setting(
        0, "train on the first N images of the prepared dataset in stored order (few-image runs; 0 = every image)"
    )
    num_examples: int = setting(1000, "how many images a 'synthetic' source generates")
    prepare_workers: int = setting(0, "processes of that automatic preparation (0 = automatic)")
    mirror_augment: bool = setting(False, "random left-right flips of the real images (per sample, on the device)")
    on_device: str = setting(
        "auto",
        "hold a level on the devices: 'auto' (when it fits in on_device_memory_fraction "
        "of the device memory), 'always' or 'never' (host pipeline)",
    )
    on_device_memory_fraction: float = setting(0.5, "share of device memory a held level may take, in (0, 1]")
    num_threads: int = setting(2, "host pipeline: reader threads")
    prefetch_batches: int = setting(4, "host pipeline: batches read ahead")
    device_prefetch: int = setting(2, "host pipeline: batches whose transfer to the devices starts ahead")

    def __post_init__(self):
        require(
            self.on_device in ON_DEVICE_MODES,
            f"config.dataset.on_device must be one of {ON_DEVICE_MODES}, got {self.on_device!r}",
        )
        fraction = self.on_device_memory_fraction
        require(
            is_number_at_least(fraction, 0) and 0 < fraction <= 1,
            f"config.dataset.on_device_memory_fraction must be in (0, 1], got {fraction}",
        )
        for name in ("num_examples", "num_threads", "prefetch_batches", "device_prefetch"):
            require(
                is_int_at_least(getattr(self, name), 1),
                f"config.dataset.{name} must be an integer >= 1, got {getattr(self, name)!r}",
            )
        require(
            is_int_at_least(self.max_images, 0),
            f"config.dataset.max_images must be an integer >= 0 (0 = every image), got {self.max_images!r}",
        )
        require(
            is_int_at_least(self.prepare_workers, 0),
            f"config.dataset.prepare_workers must be an integer >= 0 (0 = automatic), got {self.prepare_workers!r}",
        )


_TABLES = ("minibatch", "max_minibatch_per_device", "max_microbatch_per_device", "g_lr", "d_lr", "tick_kimg")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Images shown -> resolution, fade-in, minibatch, learning rates and tick length (`pggan.training.schedule`).

    Tables map a resolution to a value; a resolution missing from a table uses the field's `_base`.
    """

    initial_resolution: int = setting(4, "resolution training starts at (official lod_initial_resolution)")
    stabilize_kimg: float = setting(
        600.0, "thousands of images per resolution before the next one fades in (official lod_training_kimg)"
    )
    transition_kimg: float = setting(600.0, "thousands of images of each fade-in (official lod_transition_kimg)")
    total_kimg: float = setting(12000.0, "length of the run in thousands of real images shown")
    fit_phases_to_total: bool = setting(
        False,
        "scale stabilize_kimg and transition_kimg so that the run grows to the "
        "final resolution and trains it for one stabilize phase within "
        "total_kimg (a whole short schedule: set only total_kimg)",
    )
    max_train_seconds: float = setting(
        0.0,
        "stop after this many seconds of training (every resume counted, compiles included, start-up not; "
        "0 = no limit): a run with a time budget ends with a checkpoint before total_kimg",
    )
    minibatch_base: int = setting(16, "global minibatch at resolutions missing from `minibatch`")
    minibatch: dict = setting({}, "{resolution: global minibatch}")
    max_minibatch_per_device: dict = setting({}, "{resolution: images}: caps the minibatch at this many per device")
    max_microbatch_per_device: dict = setting(
        {},
        "{resolution: images}: run each device's minibatch as "
        "microbatches of at most this many images (less memory, same "
        "results)",
    )
    g_lr_base: float = setting(0.001, "generator learning rate at resolutions missing from `g_lr`")
    g_lr: dict = setting({}, "{resolution: generator learning rate}")
    d_lr_base: float = setting(0.001, "discriminator learning rate at resolutions missing from `d_lr`")
    d_lr: dict = setting({}, "{resolution: discriminator learning rate}")
    tick_kimg_base: float = setting(160.0, "progress tick length (kimg) at resolutions missing from `tick_kimg`")
    tick_kimg: dict = setting(TICK_KIMG, "{resolution: progress tick length in kimg}")
    minibatch_repeats: int = setting(4, "minibatches per schedule round (the schedule is evaluated once a round)")
    d_repeats: int = setting(1, "D steps per minibatch repeat (TTUR update counts, with g_repeats)")
    g_repeats: int = setting(1, "G steps per minibatch repeat")
    by_device_count: dict = setting(
        {},
        "{devices: {field: value}}: overrides of the fields above; the entry with "
        "the largest device count <= the number of devices applies",
    )

    def __post_init__(self):
        for name in _TABLES:
            _set(self, name, resolution_table(getattr(self, name), f"schedule.{name}"))
        presets = {}
        for devices, overrides in dict(self.by_device_count or {}).items():
            overrides = dict(overrides)
            unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)} - {"by_device_count"})
            require(
                not unknown and str(devices).isdigit() and int(devices) >= 1,
                f"config.schedule.by_device_count[{devices!r}] must map a device count to schedule fields, "
                f"got {sorted(overrides)}",
            )
            presets[int(devices)] = {
                name: resolution_table(value, f"schedule.by_device_count[{devices}].{name}")
                if name in _TABLES
                else value
                for name, value in overrides.items()
            }
        _set(self, "by_device_count", presets)
        for name in ("stabilize_kimg", "transition_kimg"):
            require(
                is_number_at_least(getattr(self, name), 0),
                f"config.schedule.{name} must be a number >= 0, got {getattr(self, name)}",
            )
        require(
            is_number_at_least(self.total_kimg, 0) and self.total_kimg > 0,
            f"config.schedule.total_kimg must be a positive number, got {self.total_kimg}",
        )
        require(
            is_number_at_least(self.max_train_seconds, 0),
            f"config.schedule.max_train_seconds must be a number >= 0 (0 = no limit), got {self.max_train_seconds!r}",
        )
        for name in ("minibatch_repeats", "d_repeats", "g_repeats", "minibatch_base"):
            require(
                is_int_at_least(getattr(self, name), 1),
                f"config.schedule.{name} must be an integer >= 1, got {getattr(self, name)!r}",
            )

    def for_devices(self, num_devices: int) -> ScheduleConfig:
        """This schedule with its `by_device_count` entry for `num_devices` applied (official 1/2/4/8-GPU presets)."""
        eligible = [n for n in self.by_device_count if n <= num_devices]
        if not eligible:
            return dataclasses.replace(self, by_device_count={})
        return dataclasses.replace(self, **{**self.by_device_count[max(eligible)], "by_device_count": {}})


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The optimizer of each network (`pggan.training.optimizers`; TTUR: separate betas here, learning rates and
    update counts in `schedule`)."""

    name: str = setting(
        "adam",
        "optimizer of both networks: adam (official), rmsprop (WGAN's; decay = the beta2 "
        "fields) or optimistic_adam (Daskalakis et al.)",
    )
    g_beta1: float = setting(0.0, "generator Adam beta1 (official 0)")
    g_beta2: float = setting(0.99, "generator Adam beta2 / RMSProp decay (official 0.99)")
    d_beta1: float = setting(0.0, "discriminator Adam beta1 (official 0)")
    d_beta2: float = setting(0.99, "discriminator Adam beta2 / RMSProp decay (official 0.99)")
    eps: float = setting(1e-8, "epsilon of both networks' optimizer denominators")
    optimism: float = setting(1.0, "optimistic_adam: o in u_t = (1 + o) r_t - o r_(t-1) (1 = the paper's)")
    extragradient: bool = setting(
        False,
        "extragradient steps (Korpelevich; Gidel et al. 2019): the gradient at a "
        "lookahead step, applied from the current point (twice the gradients)",
    )

    def __post_init__(self):
        require(
            self.name in optimizers.OPTIMIZERS,
            f"config.optimizer.name must be one of {optimizers.OPTIMIZERS}, got {self.name!r}",
        )
        for name in ("g_beta1", "g_beta2", "d_beta1", "d_beta2"):
            value = getattr(self, name)
            require(
                is_number_at_least(value, 0) and value < 1, f"config.optimizer.{name} must be in [0, 1), got {value}"
            )
        require(
            is_number_at_least(self.eps, 0) and self.eps > 0,
            f"config.optimizer.eps must be a positive number, got {self.eps}",
        )
        require(is_number_at_least(self.optimism, 0), f"config.optimizer.optimism must be >= 0, got {self.optimism}")
        require(
            isinstance(self.extragradient, bool),
            f"config.optimizer.extragradient must be true or false, got {self.extragradient!r}",
        )

    def transform(self, network: str, correction: float = 1.0):
        """The optax transform of `network` ('g' or 'd'), betas raised to `correction` (`optimizers.direction`)."""
        beta1, beta2 = (self.g_beta1, self.g_beta2) if network == "g" else (self.d_beta1, self.d_beta2)
        return optimizers.direction(self.name, beta1, beta2, self.eps, self.optimism, correction)


@dataclasses.dataclass(frozen=True)
class EmaConfig:
    """The generator's exponential moving average (official G_smoothing), updated after every D step."""

    beta: float = setting(0.999, "EMA decay per D step (official 0.999)")
    half_life_kimg: float = setting(
        0.0,
        "if > 0: decay so that the average halves every this many thousand images, "
        "beta = 0.5 ** (minibatch / (1000 * half_life_kimg))",
    )
    rampup: float = setting(0.0, "if > 0: the half-life is at most rampup * images shown (short runs)")

    def __post_init__(self):
        require(
            is_number_at_least(self.beta, 0) and self.beta < 1, f"config.ema.beta must be in [0, 1), got {self.beta}"
        )
        require(
            is_number_at_least(self.half_life_kimg, 0) and is_number_at_least(self.rampup, 0),
            f"config.ema.half_life_kimg and config.ema.rampup must be numbers >= 0, got "
            f"{self.half_life_kimg} and {self.rampup}",
        )


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """When checkpoints are written and how many are kept (the last of every resolution stage always is)."""

    every_ticks: int = setting(10, "checkpoint every this many progress ticks (official network_snapshot_ticks)")
    keep: int = setting(3, "newest checkpoints kept, besides the last one of every resolution stage")
    async_save: bool = setting(True, "write checkpoints in the background while training goes on")

    def __post_init__(self):
        for name in ("every_ticks", "keep"):
            require(
                is_int_at_least(getattr(self, name), 1),
                f"config.checkpoint.{name} must be an integer >= 1, got {getattr(self, name)!r}",
            )


@dataclasses.dataclass(frozen=True)
class SamplesConfig:
    """The sample grids of the EMA generator on fixed latents (WORKDIR/samples, TensorBoard)."""

    every_ticks: int = setting(1, "write a grid every this many progress ticks (official image_snapshot_ticks)")
    grid: str = setting("", "'ROWSxCOLS'; '' = the official 1080p grid for the final resolution")
    batch_size: int = setting(64, "images per generator step when drawing the grid")

    def __post_init__(self):
        for name in ("every_ticks", "batch_size"):
            require(
                is_int_at_least(getattr(self, name), 1),
                f"config.samples.{name} must be an integer >= 1, got {getattr(self, name)!r}",
            )
        if self.grid:
            try:
                latent_space.parse_grid_spec(self.grid)
            except latent_space.SamplingError as e:
                raise ValueError(f"config.samples.grid: {e}") from None

    def grid_shape(self, resolution: int) -> tuple[int, int]:
        """(rows, cols) of the grid of a model trained up to `resolution`."""
        return latent_space.parse_grid_spec(self.grid) if self.grid else latent_space.snapshot_grid_size(resolution)


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    """Metrics of the EMA generator during training (`pggan.training.periodic_metrics`)."""

    names: tuple = setting(
        ("swd",),
        "metrics among swd, ms_ssim, fid, kid, is, pr_inception, pr_vgg16 (e.g. swd,fid; "
        "empty = none); fid, kid, is and pr_inception need the Inception weights, "
        "pr_vgg16 the VGG16 weights ($PGGAN_VGG16_WEIGHTS); the Inception metrics use "
        "the tf1 protocol (StyleGAN's, docs/metrics.md)",
    )
    num_images: int = setting(4096, "real and fake images per evaluation (clipped to the dataset size)")
    batch_size: int = setting(64, "images per generator and metric step over this process's devices")
    at_stage_end: bool = setting(True, "evaluate the last state of every resolution stage")
    every_kimg: float = setting(0.0, "also evaluate every this many thousand images (0 = off)")
    seed: int = setting(0, "chooses the real subset and the fake latents (apart from the training seed)")
    inception_weights: str = setting("", "path of pt_inception-2015-12-05-6726825d.pth ('' = $PGGAN_INCEPTION_WEIGHTS)")

    def __post_init__(self):
        try:
            _set(self, "names", metrics.parse_metric_names(self.names))
        except metrics.MetricInputError as e:
            raise ValueError(f"config.metrics.names: {e}") from None
        require(
            is_int_at_least(self.num_images, metrics.MIN_IMAGES),
            f"config.metrics.num_images must be >= {metrics.MIN_IMAGES}, got {self.num_images}",
        )
        require(is_int_at_least(self.batch_size, 1), f"config.metrics.batch_size must be >= 1, got {self.batch_size}")
        require(
            is_number_at_least(self.every_kimg, 0),
            f"config.metrics.every_kimg must be >= 0 (0 = off), got {self.every_kimg}",
        )
        require(is_int_at_least(self.seed, 0), f"config.metrics.seed must be an integer >= 0, got {self.seed!r}")


SECTIONS = {
    "model": networks.ModelSpec,
    "dataset": DatasetConfig,
    "schedule": ScheduleConfig,
    "loss": losses.LossConfig,
    "d_normalization": normalization.NormalizationConfig,
    "optimizer": OptimizerConfig,
    "ema": EmaConfig,
    "checkpoint": CheckpointConfig,
    "samples": SamplesConfig,
    "metrics": MetricsConfig,
    "augment": AugmentConfig,
}


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """A whole training run's settings, typed and checked (the sections above)."""

    seed: int = setting(0, "seed of the parameters, the data order and every random draw of training")
    model: networks.ModelSpec = dataclasses.field(default_factory=networks.ModelSpec)
    dataset: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    loss: losses.LossConfig = dataclasses.field(default_factory=losses.LossConfig)
    d_normalization: normalization.NormalizationConfig = dataclasses.field(
        default_factory=normalization.NormalizationConfig
    )
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    ema: EmaConfig = dataclasses.field(default_factory=EmaConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    samples: SamplesConfig = dataclasses.field(default_factory=SamplesConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    compilation_cache_dir: str = setting(
        "~/.cache/pggan/jax",
        "compiled training rounds are kept here between runs ('' = off; an exported JAX_COMPILATION_CACHE_DIR wins)",
    )
    init_from: str = setting(
        "",
        "fine-tune: start G, D and the EMA G from these trained networks (a run's workdir, a "
        ".pggan export with --training_networks, or an official .pkl) at their resolution; "
        "'' = random initialisation",
    )
    max_consecutive_nonfinite: int = setting(
        100, "stop after this many training steps in a row were skipped for non-finite gradients (0 = never)"
    )
    cpu_ynnpack: bool = setting(
        False,
        "on CPUs, let XLA hand the training step's convolutions to YNNPACK (its default); off, XLA's own "
        "convolutions ran it 1.1-1.5x faster on the x86-64 CPU measured (BENCHMARKS.md)",
    )

    def __post_init__(self):
        require(
            is_int_at_least(self.seed, 0) and self.seed < 2**32,
            f"config.seed must be an integer in [0, 2**32), got {self.seed!r}",
        )
        require(isinstance(self.init_from, str), f"config.init_from must be a path or '', got {self.init_from!r}")
        require(
            is_int_at_least(self.max_consecutive_nonfinite, 0),
            f"config.max_consecutive_nonfinite must be >= 0 (0 = no limit), got {self.max_consecutive_nonfinite}",
        )
        mmd = self.loss.name == losses.MMD
        require(
            mmd or self.model.critic_size == 1,
            f"config.model.critic_size={self.model.critic_size} is the feature size of the MMD loss: set "
            "config.loss.name=mmd or model.critic_size=1",
        )
        require(
            not mmd or (self.model.label_size == 0 and self.d_normalization.method != "gran"),
            "config.loss.name='mmd' trains unconditional models (model.label_size=0) without GraN (which "
            "normalizes a scalar score)",
        )
        initial = self.schedule.initial_resolution
        require(
            is_power_of_two(initial) and 4 <= initial <= self.model.resolution,
            f"config.schedule.initial_resolution must be a power of two in [4, model.resolution="
            f"{self.model.resolution}], got {initial}",
        )

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> TrainingConfig:
        """The typed config of a ConfigDict (or of a checkpoint's saved JSON dict); ConfigError on any bad field.

        Sections missing from `config` take their defaults (configs saved by older versions).
        """
        top = {name: value for name, value in dict(config).items() if name not in SECTIONS}
        scalars = {f.name for f in dataclasses.fields(cls)} - set(SECTIONS)
        unknown = sorted(set(top) - scalars)
        try:
            if unknown:
                raise ValueError(f"unknown config field(s) {unknown}; valid fields: {sorted(scalars | set(SECTIONS))}")
            sections = {
                name: from_section(section, _plain(config[name]), name)
                for name, section in SECTIONS.items()
                if name in config
            }
            return cls(**top, **sections)
        except (ValueError, TypeError) as e:
            raise ConfigError(str(e)) from None

    @classmethod
    def from_json(cls, text: str) -> TrainingConfig:
        """The typed config saved in a checkpoint or config.json (`to_json`)."""
        return cls.parse(json.loads(text))

    def to_dict(self) -> dict:
        """Every field as plain JSON-ready values (sections as dicts)."""
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)


def _plain(section) -> dict:
    """A section as a plain dict of its fields (ml_collections ConfigDicts and FieldReferences resolved)."""
    to_dict = getattr(section, "to_dict", None)
    return dict(to_dict() if to_dict else section)


def describe(config: TrainingConfig) -> list[str]:
    """Every field as 'section.field = value  # meaning', for `pggan.main --show_config`."""
    lines = []
    for top in dataclasses.fields(TrainingConfig):
        value = getattr(config, top.name)
        if top.name in SECTIONS:
            for field in dataclasses.fields(value):
                lines.append(
                    _describe_line(
                        f"{top.name}.{field.name}", getattr(value, field.name), help_of(type(value), field.name)
                    )
                )
        else:
            lines.append(_describe_line(top.name, value, help_of(TrainingConfig, top.name)))
    return lines


def _describe_line(name: str, value, help_text: str) -> str:
    shown = ",".join(value) if isinstance(value, tuple) and all(isinstance(v, str) for v in value) else value
    return f"{name} = {shown!r}" + (f"  # {help_text}" if help_text else "")
