"""The progressive generator and discriminator of PGGAN (official `G_paper` / `D_paper`), in Flax NNX.

Both networks own the blocks of every resolution from 4x4 up to `ModelSpec.resolution` from
construction on, so their parameter trees never change shape and a checkpoint restores at any stage.
A forward pass takes the active resolution (a static Python int; one compile per resolution) and the
fade-in weight `alpha` (a traced scalar in [0, 1]; 1 means the newest resolution is fully in) and
computes at the active resolution only.

Block `i` serves resolution `4 * 2**i`. Channel widths follow `ModelSpec.channels(stage)`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from pggan import config_section
from pggan.config_section import setting
from pggan.model import layers

D_DOWNSAMPLE_ORDERS = ("conv_pool_act", "conv_act_pool")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Architecture hyper-parameters shared by G and D (official names and defaults where they exist).

    G concatenates one-hot labels to the latent; D outputs critic_size + label_size values. The last three
    fields (COMPUTE_FIELDS) are compute settings, not architecture: a run may change them when it resumes.
    """

    resolution: int = setting(1024, "final resolution, a power of two in [8, 1024]")
    num_channels: int = setting(3, "image channels: 3 (RGB) or 1 (greyscale)")
    latent_size: int = setting(512, "length of the latent vector z")
    label_size: int = setting(0, "classes of a class-conditional model (0 = unconditional)")
    critic_size: int = setting(
        1,
        "D's outputs before the class logits: 1 = a score (every loss but mmd), "
        "> 1 = the feature vector of the MMD loss",
    )
    fmap_base: int = setting(8192, "channel widths: nf(stage) = min(fmap_base / 2**(stage * fmap_decay), fmap_max)")
    fmap_decay: float = setting(1.0, "see fmap_base")
    fmap_max: int = setting(512, "see fmap_base")
    normalize_latents: bool = setting(True, "PixelNorm on G's input")
    use_pixelnorm: bool = setting(True, "PixelNorm after every convolution of G")
    use_wscale: bool = setting(True, "equalized learning rate")
    pixelnorm_epsilon: float = setting(1e-8, "epsilon of PixelNorm")
    mbstd_group_size: int = setting(4, "minibatch-stddev group size (0 or 1 disables the layer)")
    d_downsample_order: str = setting(
        "conv_pool_act",
        "'conv_pool_act' (official TF: D's second conv, 2x2 average "
        "pool, bias, leaky ReLU) or 'conv_act_pool' (paper/Theano: "
        "pool after the activation)",
    )
    compute_dtype: str = setting("float32", "activations in 'float32' or 'bfloat16' (parameters stay float32)")
    upsample_impl: str = setting(
        "naive", "form of G's upsample + conv: naive, transposed or subpixel (same function, different speed)"
    )
    downsample_impl: str = setting("naive", "form of D's conv + pool: naive or strided (same function)")

    COMPUTE_FIELDS = ("compute_dtype", "upsample_impl", "downsample_impl")

    def __post_init__(self):
        if self.resolution < 8 or self.resolution > 1024 or self.resolution & (self.resolution - 1):
            raise ValueError(f"model.resolution must be a power of two in [8, 1024], got {self.resolution}")
        if self.d_downsample_order not in D_DOWNSAMPLE_ORDERS:
            raise ValueError(
                f"model.d_downsample_order must be one of {D_DOWNSAMPLE_ORDERS}, got {self.d_downsample_order!r}"
            )
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"model.compute_dtype must be one of {tuple(COMPUTE_DTYPES)}, got {self.compute_dtype!r}")
        if self.upsample_impl not in layers.UPSAMPLE_CONV_IMPLS:
            raise ValueError(
                f"model.upsample_impl must be one of {layers.UPSAMPLE_CONV_IMPLS}, got {self.upsample_impl!r}"
            )
        if self.downsample_impl not in layers.CONV_DOWNSAMPLE_IMPLS:
            raise ValueError(
                f"model.downsample_impl must be one of {layers.CONV_DOWNSAMPLE_IMPLS}, got {self.downsample_impl!r}"
            )
        for name in ("num_channels", "latent_size", "fmap_base", "fmap_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if not (math.isfinite(self.fmap_decay) and self.fmap_decay >= 0):
            raise ValueError(f"model.fmap_decay must be a number >= 0, got {self.fmap_decay}")
        if self.channels(self.num_levels) < 1:
            raise ValueError(
                f"model.fmap_base={self.fmap_base} is too small: the {self.resolution}x"
                f"{self.resolution} blocks would have 0 channels; raise fmap_base or lower fmap_decay"
            )
        if self.label_size < 0:
            raise ValueError(f"model.label_size must be >= 0, got {self.label_size}")
        if not isinstance(self.critic_size, int) or self.critic_size < 1:
            raise ValueError(f"model.critic_size must be an integer >= 1, got {self.critic_size!r}")
        if self.mbstd_group_size < 0:
            raise ValueError(
                f"model.mbstd_group_size must be >= 0 (0 or 1 = no minibatch-stddev layer), got {self.mbstd_group_size}"
            )
        if not (math.isfinite(self.pixelnorm_epsilon) and self.pixelnorm_epsilon > 0):
            raise ValueError(f"model.pixelnorm_epsilon must be a positive number, got {self.pixelnorm_epsilon}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelSpec:
        """Builds a spec from a mapping (e.g. an ml_collections `config.model`); unknown keys are errors."""
        return config_section.from_section(cls, config, "model")

    def architecture(self) -> dict[str, Any]:
        """The fields that define the parameters and the function (everything but compute settings)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.COMPUTE_FIELDS}

    @property
    def num_levels(self) -> int:
        """Number of resolutions 4, 8, ..., resolution."""
        return int(math.log2(self.resolution)) - 1

    @property
    def dtype(self):
        return COMPUTE_DTYPES[self.compute_dtype]

    def channels(self, stage: int) -> int:
        """Official `nf(stage) = min(fmap_base / 2**(stage * fmap_decay), fmap_max)`.

        Resolution 2**k uses nf(k - 1) channels (512 at 4..32 px in the full model, 16 at 1024 px).
        """
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)


def level_of(resolution: int, spec: ModelSpec) -> int:
    """Block index of an active resolution (4 -> 0, 8 -> 1, ...); errors on impossible values."""
    level = int(math.log2(resolution)) - 2 if resolution >= 4 else -1
    if resolution & (resolution - 1) or not 0 <= level < spec.num_levels:
        raise ValueError(f"active resolution must be a power of two in [4, {spec.resolution}], got {resolution}")
    return level


# ----------------------------------------------------------------------------------------------
# Generator


class GeneratorInitialBlock(nnx.Module):
    """4x4 block: (PixelNorm of z) -> dense to [4, 4, C] (gain sqrt(2)/4) -> + bias per channel -> lrelu -> PN
    -> conv3x3 -> lrelu -> PN.

    As the official `G_paper`, the dense layer's bias is added after the reshape: C values shared by
    the 16 pixels (kernel [latent + labels, 16 C] in (h, w, c) column order, bias [C]).
    """

    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        c = spec.channels(1)
        self.spec = spec
        self.dense = layers.EqualizedDense(
            spec.latent_size + spec.label_size,
            (4, 4, c),
            gain=math.sqrt(2) / 4,
            use_wscale=spec.use_wscale,
            dtype=spec.dtype,
            rngs=rngs,
        )
        self.conv = layers.EqualizedConv(c, c, 3, use_wscale=spec.use_wscale, dtype=spec.dtype, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        """z: [N, latent_size + label_size] -> features [N, 4, 4, nf(1)]."""
        spec = self.spec
        if spec.normalize_latents:
            z = layers.pixel_norm(z, spec.pixelnorm_epsilon)
        x = self.dense(z)
        x = _g_activate(x, spec)
        return _g_activate(self.conv(x), spec)


class GeneratorBlock(nnx.Module):
    """Resolution-doubling block: upsample -> conv3x3 -> lrelu -> PN -> conv3x3 -> lrelu -> PN."""

    def __init__(self, spec: ModelSpec, level: int, *, rngs: nnx.Rngs):
        k = level + 2
        cin, cout = spec.channels(k - 2), spec.channels(k - 1)
        self.spec = spec
        self.conv0 = layers.EqualizedConv(
            cin, cout, 3, use_wscale=spec.use_wscale, dtype=spec.dtype, upsample_impl=spec.upsample_impl, rngs=rngs
        )
        self.conv1 = layers.EqualizedConv(cout, cout, 3, use_wscale=spec.use_wscale, dtype=spec.dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[N, r/2, r/2, nf(k-2)] -> [N, r, r, nf(k-1)] for r = 2**k."""
        x = _g_activate(self.conv0.upsample_conv(x), self.spec)
        return _g_activate(self.conv1(x), self.spec)


def _g_activate(x: jax.Array, spec: ModelSpec) -> jax.Array:
    x = layers.leaky_relu(x)
    return layers.pixel_norm(x, spec.pixelnorm_epsilon) if spec.use_pixelnorm else x


class Generator(nnx.Module):
    """Progressive generator. `blocks[i]` and `to_rgb[i]` serve resolution 4 * 2**i."""

    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        self.spec = spec
        self.blocks = nnx.List(
            [GeneratorInitialBlock(spec, rngs=rngs)]
            + [GeneratorBlock(spec, level, rngs=rngs) for level in range(1, spec.num_levels)]
        )
        self.to_rgb = nnx.List(
            [
                layers.EqualizedConv(
                    spec.channels(level + 1),
                    spec.num_channels,
                    1,
                    gain=1.0,
                    use_wscale=spec.use_wscale,
                    dtype=spec.dtype,
                    rngs=rngs,
                )
                for level in range(spec.num_levels)
            ]
        )

    def __call__(
        self, latents: jax.Array, labels: jax.Array | None = None, *, resolution: int, alpha: jax.Array | float = 1.0
    ) -> jax.Array:
        """Generates images at the active resolution.

        Args:
          latents: float [N, latent_size], usually N(0, 1).
          labels: float [N, label_size] one-hot class labels, required iff label_size > 0.
          resolution: active resolution (static), a power of two in [4, spec.resolution].
          alpha: fade-in weight of the active resolution in [0, 1] (traced); ignored at 4x4.

        Returns:
          float32 [N, resolution, resolution, num_channels], linear output (trained toward [-1, 1]).
        """
        level = level_of(resolution, self.spec)
        x = _concat_labels(latents, labels, self.spec)
        x = self.blocks[0](x)
        previous = x
        for i in range(1, level + 1):
            previous, x = x, self.blocks[i](x)
        images = self.to_rgb[level](x)
        if level > 0:
            images = layers.fade(images, layers.upsample2x(self.to_rgb[level - 1](previous)), alpha)
        return images.astype(jnp.float32)


def _concat_labels(latents: jax.Array, labels: jax.Array | None, spec: ModelSpec) -> jax.Array:
    if spec.label_size == 0:
        if labels is not None:
            raise ValueError("labels given to an unconditional generator (model.label_size = 0)")
        return latents
    if labels is None or labels.shape[-1] != spec.label_size:
        raise ValueError(f"a conditional generator needs one-hot labels [N, {spec.label_size}]")
    return jnp.concatenate([latents, labels.astype(latents.dtype)], axis=-1)


# ----------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorFinalBlock(nnx.Module):
    """4x4 block: minibatch stddev -> conv3x3 -> lrelu -> dense nf(0) -> lrelu -> dense critic_size + labels
    (gain 1)."""

    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        c = spec.channels(1)
        extra = 1 if spec.mbstd_group_size > 1 else 0
        self.spec = spec
        self.conv = layers.EqualizedConv(c + extra, c, 3, use_wscale=spec.use_wscale, dtype=spec.dtype, rngs=rngs)
        self.dense0 = layers.EqualizedDense(
            16 * c, spec.channels(0), use_wscale=spec.use_wscale, dtype=spec.dtype, rngs=rngs
        )
        self.dense1 = layers.EqualizedDense(
            spec.channels(0),
            spec.critic_size + spec.label_size,
            gain=1.0,
            use_wscale=spec.use_wscale,
            dtype=spec.dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """[N, 4, 4, nf(1)] -> [N, critic_size + label_size]."""
        if self.spec.mbstd_group_size > 1:
            x = layers.minibatch_stddev(x, self.spec.mbstd_group_size)
        x = layers.leaky_relu(self.conv(x))
        x = layers.leaky_relu(self.dense0(x))
        return self.dense1(x)


class DiscriminatorBlock(nnx.Module):
    """Resolution-halving block: conv3x3 -> lrelu -> conv3x3 + 2x2 avg pool (order per spec) -> lrelu."""

    def __init__(self, spec: ModelSpec, level: int, *, rngs: nnx.Rngs):
        k = level + 2
        cin, cout = spec.channels(k - 1), spec.channels(k - 2)
        self.spec = spec
        self.conv0 = layers.EqualizedConv(cin, cin, 3, use_wscale=spec.use_wscale, dtype=spec.dtype, rngs=rngs)
        self.conv1 = layers.EqualizedConv(
            cin, cout, 3, use_wscale=spec.use_wscale, dtype=spec.dtype, downsample_impl=spec.downsample_impl, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """[N, r, r, nf(k-1)] -> [N, r/2, r/2, nf(k-2)] for r = 2**k."""
        x = layers.leaky_relu(self.conv0(x))
        if self.spec.d_downsample_order == "conv_pool_act":
            return layers.leaky_relu(self.conv1.conv_downsample(x))
        return layers.downsample2x(layers.leaky_relu(self.conv1(x)))


class Discriminator(nnx.Module):
    """Progressive discriminator (critic). `blocks[i]` and `from_rgb[i]` serve resolution 4 * 2**i."""

    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        self.spec = spec
        self.blocks = nnx.List(
            [DiscriminatorFinalBlock(spec, rngs=rngs)]
            + [DiscriminatorBlock(spec, level, rngs=rngs) for level in range(1, spec.num_levels)]
        )
        self.from_rgb = nnx.List(
            [
                layers.EqualizedConv(
                    spec.num_channels,
                    spec.channels(level + 1),
                    1,
                    use_wscale=spec.use_wscale,
                    dtype=spec.dtype,
                    rngs=rngs,
                )
                for level in range(spec.num_levels)
            ]
        )

    def _from_rgb(self, level: int, images: jax.Array) -> jax.Array:
        return layers.leaky_relu(self.from_rgb[level](images))

    def __call__(self, images: jax.Array, *, resolution: int, alpha: jax.Array | float = 1.0) -> jax.Array:
        """Scores images at the active resolution.

        Args:
          images: float [N, resolution, resolution, num_channels] in about [-1, 1]. N must be divisible
            by min(mbstd_group_size, N).
          resolution: active resolution (static), a power of two in [4, spec.resolution].
          alpha: fade-in weight of the active resolution in [0, 1] (traced); ignored at 4x4.

        Returns:
          float32 [N, critic_size + label_size]: the critic score (critic_size 1; MMD's features when
          larger), then the class logits.
        """
        level = level_of(resolution, self.spec)
        if images.shape[1:] != (resolution, resolution, self.spec.num_channels):
            raise ValueError(
                f"discriminator expects images [N, {resolution}, {resolution}, "
                f"{self.spec.num_channels}], got {images.shape}"
            )
        x = self.blocks[level](self._from_rgb(level, images))
        if level > 0:
            x = layers.fade(x, self._from_rgb(level - 1, layers.downsample2x(images)), alpha)
            for i in range(level - 1, 0, -1):
                x = self.blocks[i](x)
            x = self.blocks[0](x)
        return x.astype(jnp.float32)

    def features(self, images: jax.Array, *, resolution: int) -> list[jax.Array]:
        """D's activations of fully faded-in images, for perceptual distances (projection of real images).

        images: float [N, resolution, resolution, num_channels] in about [-1, 1]. Returns float32
        [N, r, r, c] arrays: after from_rgb at `resolution`, then after each resolution-halving block
        down to 4x4 (the minibatch-stddev block is left out, so each image's features are its own).
        """
        level = level_of(resolution, self.spec)
        x = self._from_rgb(level, images)
        found = [x]
        for i in range(level, 0, -1):
            x = self.blocks[i](x)
            found.append(x)
        return [f.astype(jnp.float32) for f in found]


def build_networks(spec: ModelSpec, seed: int) -> tuple[Generator, Discriminator]:
    """Creates G and D with parameters drawn from `seed` (G and D get independent streams)."""
    generator = Generator(spec, rngs=nnx.Rngs(params=jax.random.fold_in(jax.random.key(seed), 0)))
    discriminator = Discriminator(spec, rngs=nnx.Rngs(params=jax.random.fold_in(jax.random.key(seed), 1)))
    return generator, discriminator


def abstract_generator(spec: ModelSpec) -> Generator:
    """A Generator whose parameters are ShapeDtypeStructs (no memory, no compute)."""
    return nnx.eval_shape(lambda: Generator(spec, rngs=nnx.Rngs(0)))


def abstract_discriminator(spec: ModelSpec) -> Discriminator:
    """A Discriminator whose parameters are ShapeDtypeStructs (no memory, no compute)."""
    return nnx.eval_shape(lambda: Discriminator(spec, rngs=nnx.Rngs(0)))


def parameters(module: nnx.Module) -> dict:
    """The module's parameters as a pure nested dict (list indices as int keys), the checkpoint format."""
    return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def merge_parameters(module: nnx.Module, params: dict) -> nnx.Module:
    """A module of `module`'s structure (may be abstract) holding `params` (a pure nested dict)."""
    return nnx.merge(nnx.graphdef(module), params)


def count_parameters(module: nnx.Module) -> int:
    """Total number of scalar parameters of a module."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
