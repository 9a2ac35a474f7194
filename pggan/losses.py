"""GAN losses and penalties on per-sample critic outputs (official `loss.py` semantics).

All functions return per-sample float32 vectors [N]; the train step averages them over the device's
minibatch (and `pmean`s gradients over devices), exactly as the official code's `reduce_mean`.

- 'wgan' (default, with the one-centred gradient penalty of WGAN-GP and the drift term):
  D = D(fake) - D(real) + lambda * (||grad D(x_hat)|| - target)^2 / target^2 + eps * D(real)^2,
  G = -D(fake), x_hat = lerp(real, fake, u), u ~ U(0, 1) per sample.
- 'lsgan' (least squares, Mao et al.; the paper's alternative): D = ((D(real) - 1)^2 + D(fake)^2) / 2,
  G = (D(fake) - 1)^2 / 2.
- AC-GAN: with class labels, cross-entropy of D's label logits on reals and fakes (D) and on fakes
  (G), weighted by `cond_weight`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

LOSSES = ("wgan", "lsgan")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """name: adversarial loss ('wgan' or 'lsgan'). gp_lambda: weight of the gradient penalty on
    interpolates (0 disables it). gp_target: its target norm. drift: weight of D(real)^2.
    cond_weight: weight of the AC-GAN label terms (used only when the model has labels)."""

    name: str = "wgan"
    gp_lambda: float = 10.0
    gp_target: float = 1.0
    drift: float = 0.001
    cond_weight: float = 1.0

    def __post_init__(self):
        if self.name not in LOSSES:
            raise ValueError(f"loss.name must be one of {LOSSES}, got {self.name!r}")
        if self.gp_lambda < 0 or self.drift < 0 or self.gp_target <= 0:
            raise ValueError("loss.gp_lambda and loss.drift must be >= 0 and loss.gp_target > 0")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "LossConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ValueError(f"unknown loss config field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**dict(config))


def d_adversarial(name: str, real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
    """Discriminator's adversarial term per sample. Scores: float32 [N]."""
    if name == "wgan":
        return fake_scores - real_scores
    return 0.5 * (jnp.square(real_scores - 1.0) + jnp.square(fake_scores))


def g_adversarial(name: str, fake_scores: jax.Array) -> jax.Array:
    """Generator's adversarial term per sample. Scores: float32 [N]."""
    if name == "wgan":
        return -fake_scores
    return 0.5 * jnp.square(fake_scores - 1.0)


def interpolate(reals: jax.Array, fakes: jax.Array, mix: jax.Array) -> jax.Array:
    """x_hat = reals + (fakes - reals) * mix; mix: float [N] in [0, 1]; images [N, H, W, C]."""
    return reals + (fakes - reals) * mix[:, None, None, None].astype(reals.dtype)


def input_gradient_norms(critic: Callable[[jax.Array], jax.Array], images: jax.Array) -> jax.Array:
    """||d sum(critic(images)) / d image_n||_2 per sample, float32 [N]. critic returns scores [N]."""
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(images)
    return jnp.sqrt(jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=(1, 2, 3)))


def one_centred_penalty(norms: jax.Array, target: float) -> jax.Array:
    """(||g|| - target)^2 / target^2 per sample (to be weighted by lambda)."""
    return jnp.square(norms - target) / (target ** 2)


def label_cross_entropy(label_logits: jax.Array, labels_onehot: jax.Array) -> jax.Array:
    """Softmax cross-entropy per sample. logits, labels: float [N, label_size]."""
    return optax.softmax_cross_entropy(label_logits.astype(jnp.float32), labels_onehot.astype(jnp.float32))


def discriminator_loss(cfg: LossConfig, critic: Callable[[jax.Array], jax.Array], reals: jax.Array,
                       fakes: jax.Array, mix: jax.Array, labels_onehot: jax.Array | None):
    """Per-device D loss on one minibatch.

    Args:
      cfg: the loss configuration.
      critic: images [N, H, W, C] -> D output float32 [N, 1 + label_size]. D is called separately on
        reals, fakes and interpolates (minibatch stddev sees one kind of image at a time).
      reals, fakes: float [N, H, W, C] in about [-1, 1] (reals already mirrored and faded).
      mix: float32 [N] interpolation factors in [0, 1].
      labels_onehot: float [N, label_size] or None.

    Returns:
      (scalar loss = mean over samples, dict of per-batch means: real/fake scores, penalty, norms).
    """
    real_out, fake_out = critic(reals), critic(fakes)
    real_scores, fake_scores = real_out[:, 0], fake_out[:, 0]
    loss = d_adversarial(cfg.name, real_scores, fake_scores)
    aux = {"real_score": jnp.mean(real_scores), "fake_score": jnp.mean(fake_scores)}
    if cfg.gp_lambda > 0:
        norms = input_gradient_norms(lambda x: critic(x)[:, 0], interpolate(reals, fakes, mix))
        penalty = one_centred_penalty(norms, cfg.gp_target)
        loss = loss + cfg.gp_lambda * penalty
        aux.update(gradient_penalty=jnp.mean(penalty), grad_norm=jnp.mean(norms))
    if cfg.drift > 0:
        loss = loss + cfg.drift * jnp.square(real_scores)
    if labels_onehot is not None:
        loss = loss + cfg.cond_weight * (label_cross_entropy(real_out[:, 1:], labels_onehot)
                                         + label_cross_entropy(fake_out[:, 1:], labels_onehot))
    return jnp.mean(loss), aux


def generator_loss(cfg: LossConfig, critic: Callable[[jax.Array], jax.Array], fakes: jax.Array,
                   labels_onehot: jax.Array | None) -> jax.Array:
    """Per-device G loss (scalar, mean over samples) for fakes [N, H, W, C] made from labels_onehot."""
    fake_out = critic(fakes)
    loss = g_adversarial(cfg.name, fake_out[:, 0])
    if labels_onehot is not None:
        loss = loss + cfg.cond_weight * label_cross_entropy(fake_out[:, 1:], labels_onehot)
    return jnp.mean(loss)
