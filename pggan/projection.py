"""Projection of real images: the latent z whose generated image is closest to a target.

StyleGAN2's projector (Karras et al. 2020, projector.py) adapted to PGGAN, which has no mapping network
and no noise inputs: Adam optimises z itself, with
  - noise ramp: Gaussian noise of std `initial_noise_factor * max(0, 1 - t / noise_ramp_length)**2` is
    added to z at training fraction t (z ~ N(0, I) plays the role of StyleGAN2's w, whose std is 1 here),
  - learning-rate ramp: up over the first `lr_rampup_length`, cosine down over the last `lr_rampdown_length`,
  - restarts: `restarts` independent starting latents per target, optimised together; the closest wins,
  - for a generator that normalises its latents (PixelNorm, the official setting) z is kept on the sphere
    of radius sqrt(latent_size), where N(0, I) latents lie; its scale would not change the image.
The distance has three terms built from the models pggan already has, each 0 for identical images:
  pixels   mean squared difference in [-1, 1],
  ms_ssim  1 - MS-SSIM (`pggan.metrics.ms_ssim`; images of at least 16x16),
  d        the trained discriminator's features (`Discriminator.features`): per layer the mean squared
           difference relative to the target's mean squared activation, averaged over layers.
Targets are projected in one batch of N * restarts latents.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pggan import parallel
from pggan.errors import UserError
from pggan.metrics import ms_ssim
from pggan.model import networks
from pggan.sampling import media


class ProjectionError(UserError):
    """Settings or targets the projection cannot use; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class ProjectionConfig:
    """How to project (defaults: StyleGAN2's projector where it applies; 300 steps suffice for small models)."""

    num_steps: int = 300
    restarts: int = 4
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    pixel_weight: float = 1.0
    ms_ssim_weight: float = 1.0
    d_weight: float = 1.0
    seed: int = 0
    frame_every: int = 0  # record the best image of each target every this many steps (0 = none)

    def __post_init__(self):
        if self.num_steps < 1 or self.restarts < 1 or self.frame_every < 0:
            raise ProjectionError(
                f"steps and restarts must be >= 1 and frame_every >= 0, got {self.num_steps}, "
                f"{self.restarts}, {self.frame_every}"
            )
        weights = (self.pixel_weight, self.ms_ssim_weight, self.d_weight)
        if min(weights) < 0 or not sum(weights) > 0:
            raise ProjectionError(
                f"the distance weights (pixels, MS-SSIM, D) must be >= 0 and not all 0, got {weights}"
            )


@dataclasses.dataclass(frozen=True)
class Projection:
    """latents: float32 [N, latent_size] (one per target; `TrainedGenerator.generate_from_latents` draws them).
    distances: float32 [N], the final distance of each. history: float32 [num_steps, N], the distance (with
    the step's noise) of each target's best restart. frames: uint8 [F, N, R, R, C] if recorded, else None."""

    latents: np.ndarray
    distances: np.ndarray
    history: np.ndarray
    frames: np.ndarray | None


def _learning_rate(config: ProjectionConfig, t: jax.Array) -> jax.Array:
    ramp = jnp.minimum(1.0, (1.0 - t) / config.lr_rampdown_length)
    ramp = 0.5 - 0.5 * jnp.cos(ramp * jnp.pi)
    return config.initial_learning_rate * ramp * jnp.minimum(1.0, t / config.lr_rampup_length)


def _noise_strength(config: ProjectionConfig, t: jax.Array) -> jax.Array:
    return config.initial_noise_factor * jnp.maximum(0.0, 1.0 - t / config.noise_ramp_length) ** 2


def _distance(
    config: ProjectionConfig,
    d_graph,
    d_state,
    resolution: int,
    images: jax.Array,
    targets: jax.Array,
    target_features: list[jax.Array] | None,
) -> jax.Array:
    """images float [M, R, R, C] in [-1, 1] vs targets [M, R, R, C] -> float32 [M] (see the module docstring).

    d_graph, d_state: the split discriminator (None without the D term); target_features: its features of
    the targets.
    """
    total = config.pixel_weight * jnp.mean((images - targets) ** 2, axis=(1, 2, 3))
    if config.ms_ssim_weight:
        scale = lambda x: (jnp.clip(x, -1.0, 1.0) + 1.0) * 127.5  # noqa: E731
        total += config.ms_ssim_weight * (1.0 - ms_ssim.ms_ssim(scale(images), scale(targets), 1e-4))
    if config.d_weight:
        features = nnx.merge(d_graph, d_state).features(images, resolution=resolution)
        terms = [
            jnp.mean((f - t) ** 2, axis=(1, 2, 3)) / (jnp.mean(t**2, axis=(1, 2, 3)) + 1e-8)
            for f, t in zip(features, target_features)
        ]
        total += config.d_weight * jnp.mean(jnp.stack(terms), axis=0)
    return total


def project(
    generator: networks.Generator,
    targets: np.ndarray,
    *,
    resolution: int,
    alpha: float = 1.0,
    discriminator: networks.Discriminator | None = None,
    labels: np.ndarray | None = None,
    config: ProjectionConfig = ProjectionConfig(),
    progress=None,
) -> Projection:
    """Projects each target image into the generator's latent space.

    Args:
      generator: the (EMA) generator; not modified.
      targets: uint8 [N, resolution, resolution, num_channels].
      resolution, alpha: the stage the generator samples at.
      discriminator: the run's D, needed when config.d_weight > 0.
      labels: float32 one-hot [N, label_size] for a conditional generator, else None.
      progress: called as progress(step, distances float32 [N]) after each step, or None.
    """
    spec = generator.spec
    targets = np.asarray(targets)
    if targets.dtype != np.uint8 or targets.shape[1:] != (resolution, resolution, spec.num_channels):
        raise ProjectionError(
            f"targets must be uint8 [N, {resolution}, {resolution}, {spec.num_channels}], got "
            f"{targets.dtype} {targets.shape}"
        )
    if config.d_weight and discriminator is None:
        raise ProjectionError(
            "the discriminator term needs the run's D: load a run, an official .pkl or an export "
            "made with --training_networks, or set the D weight to 0"
        )
    if config.ms_ssim_weight and resolution < 16:
        raise ProjectionError(
            f"MS-SSIM needs images of at least 16x16, these are {resolution}x{resolution}; set the MS-SSIM weight to 0"
        )
    if (labels is None) != (spec.label_size == 0):
        raise ProjectionError("a conditional generator needs the class of the target (and an unconditional one none)")
    n, r, d = len(targets), config.restarts, spec.latent_size
    # Everything the jitted functions read is passed as an argument, never closed over: XLA would fold
    # closed-over arrays into the program as constants (slow compiles for large batches).
    inputs = {
        "targets": jnp.repeat(jnp.asarray(targets, jnp.float32) / 127.5 - 1.0, r, axis=0),  # [N * R, ...]
        "labels": None if labels is None else jnp.repeat(jnp.asarray(labels, jnp.float32), r, axis=0),
        "g": nnx.split(generator)[1],
        "d": None,
        "d_features": None,
    }
    g_graph, d_graph = nnx.graphdef(generator), None
    if config.d_weight:
        d_graph, inputs["d"] = nnx.split(discriminator)
        inputs["d_features"] = discriminator.features(inputs["targets"], resolution=resolution)
    adam = optax.scale_by_adam()

    def images_and_distances(z, inputs):
        images = nnx.merge(g_graph, inputs["g"])(z, inputs["labels"], resolution=resolution, alpha=alpha)
        return images, _distance(
            config, d_graph, inputs["d"], resolution, images, inputs["targets"], inputs["d_features"]
        )

    def on_sphere(z):
        return z * jnp.sqrt(d) / jnp.linalg.norm(z, axis=1, keepdims=True) if spec.normalize_latents else z

    options = parallel.compiler_options(jax.default_backend())

    @functools.partial(jax.jit, compiler_options=options)
    def step(z, opt_state, key, t, inputs):
        def loss(z):
            images, per_latent = images_and_distances(
                z + _noise_strength(config, t) * jax.random.normal(key, z.shape), inputs
            )
            return jnp.sum(per_latent), (per_latent, images)

        (_, (per_latent, images)), grads = jax.value_and_grad(loss, has_aux=True)(z)
        updates, opt_state = adam.update(grads, opt_state)
        return on_sphere(z - _learning_rate(config, t) * updates), opt_state, per_latent, images

    final = jax.jit(lambda z, inputs: images_and_distances(z, inputs)[1], compiler_options=options)

    key = jax.random.key(config.seed)
    z = on_sphere(jnp.asarray(np.random.default_rng(config.seed).standard_normal((n * r, d)), jnp.float32))
    opt_state = adam.init(z)
    history, frames = [], []
    for i in range(config.num_steps):
        t = jnp.float32(i / config.num_steps)
        z, opt_state, per_latent, images = step(z, opt_state, jax.random.fold_in(key, i), t, inputs)
        per_target = np.asarray(per_latent).reshape(n, r)
        history.append(per_target.min(axis=1))
        if config.frame_every and (i % config.frame_every == 0 or i == config.num_steps - 1):
            best = per_target.argmin(axis=1) + np.arange(n) * r
            frames.append(media.to_uint8(np.asarray(images)[best]))
        if progress:
            progress(i, history[-1])
    distances = np.asarray(final(z, inputs)).reshape(n, r)
    best = distances.argmin(axis=1)
    latents = np.asarray(z).reshape(n, r, d)[np.arange(n), best]
    return Projection(
        latents=latents.astype(np.float32),
        distances=distances[np.arange(n), best].astype(np.float32),
        history=np.asarray(history, np.float32),
        frames=np.stack(frames) if frames else None,
    )


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of uint8 image pairs [N, H, W, C]: float64 [N] (inf if identical)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0**2 / mse)
