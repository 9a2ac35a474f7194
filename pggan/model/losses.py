"""GAN losses and penalties on per-sample critic outputs (official `loss.py` semantics, and later ones).

The default is the official PGGAN loss: 'wgan' with the one-centred gradient penalty of WGAN-GP
(lambda 10, target 1) and the drift term (0.001). Every other term is a separate setting of
`LossConfig` (`config.loss`), so adversarial losses and penalties compose freely.

Adversarial losses, per sample, with r = D(real), f = D(fake) (column 0 of D's output):
- 'wgan':     D = f - r,                                  G = -f.
- 'logistic': non-saturating (Goodfellow et al. 2014):  D = softplus(f) + softplus(-r), G = softplus(-f).
  Alias 'non_saturating'.
- 'lsgan':    least squares (Mao et al. 2017; the paper's alternative): D = ((r - 1)^2 + f^2) / 2,
  G = (f - 1)^2 / 2. Alias 'least_squares'.
- 'hinge':    D = relu(1 - r) + relu(1 + f),              G = -f.
- 'mmd':      MMD GAN (Li et al. 2017; Binkowski et al. 2018): D outputs features h [N, F] (F =
  `model.critic_size`), and with a characteristic kernel k (a mixture, `mmd_kernel`)
  D = -MMD^2_u(h(real), h(fake)), G = MMD^2_u(h(real), h(fake)), the unbiased estimate
      MMD^2_u = sum_{i!=j} k(r_i, r_j) / (n (n - 1)) + sum_{i!=j} k(f_i, f_j) / (n (n - 1)) - 2 mean_{i,j} k(r_i, f_j).
  Kernels: 'rq' sum_a (1 + d^2 / (2 a))^(-a), a in RQ_ALPHAS (Binkowski et al.); 'rbf'
  sum_s exp(-d^2 / (2 s^2)), s in RBF_SIGMAS (Li et al.); d = ||h(x) - h(y)||. Its gradient penalty
  (gp_lambda, as Binkowski et al.'s MMD GAN-GP) is the one-centred penalty on the witness function
  w(x) = mean_j k(h(x), h(r_j)) - mean_j k(h(x), h(f_j)) at interpolates; 'real_score' and
  'fake_score' report w's means. The estimate is taken over the rows of each device's (micro)batch,
  so unlike the per-sample losses it depends on how the minibatch is split (a mean of unbiased
  estimates). Unconditional models only; no drift, R1/R2, zero-centred, lazy or DAT terms.

Penalties (added to D's loss; norms are per-sample L2 norms of the input gradient of the batch sum
of D's score, as in the official code):
- one-centred penalty on interpolates (WGAN-GP): gp_lambda * (||grad D(x_hat)|| - gp_target)^2 / gp_target^2,
  x_hat = lerp(real, fake, u), u ~ U(0, 1) per sample.
- zero-centred penalty on interpolates: gp0_lambda * ||grad D(x_hat)||^2 (same x_hat).
- R1 (Mescheder et al. 2018): r1_gamma / 2 * ||grad D(real)||^2.  R2: r2_gamma / 2 * ||grad D(fake)||^2.
- drift: drift * D(real)^2.
- AC-GAN: with class labels, cross-entropy of D's label logits on reals and fakes (D) and on fakes
  (G), weighted by `cond_weight`.
Adversarial training of D (DAT; Zhong et al. 2020): with dat_epsilon = eps > 0, D's step sees reals
and fakes moved within the L-inf ball of radius eps (images in [-1, 1]) to where they *raise* D's
adversarial loss, by `dat_steps` steps of projected gradient ascent from the clean images (PGD,
Madry et al. 2018): delta <- clip(delta + a * sign(grad_delta sum(D loss)), -eps, eps) with
a = eps for one step (FGSM) and a = 2.5 eps / steps otherwise. The perturbed images are constants
of D's gradient and replace the clean ones in every term of D's step (penalties included); G's
step is unchanged.
Lazy regularization (StyleGAN2): with reg_interval = k > 0 the gradient penalties (not the drift)
leave the D step and run as a separate D optimizer step after every k-th D step, weighted by k, and
D's Adam uses lr * c, beta1 ** c, beta2 ** c with c = k / (k + 1) (`adam_correction`).

All functions return per-sample float32 vectors [N] or their mean; the train step averages over the
device's minibatch (and `pmean`s gradients over devices), exactly as the official `reduce_mean`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from pggan import config_section
from pggan.config_section import setting
from pggan.model.normalization import safe_norm, scores_and_squared_input_grads

LOSSES = ("wgan", "logistic", "lsgan", "hinge")  # per-sample losses
MMD = "mmd"
RQ_ALPHAS = (0.2, 0.5, 1.0, 2.0, 5.0)
RBF_SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)
MMD_KERNELS = ("rq", "rbf")
LOSS_ALIASES = {"non_saturating": "logistic", "least_squares": "lsgan"}
# Aux metrics of a D loss: unweighted penalty values (means over samples) and the interpolates' norm.
PENALTY_METRICS = ("gradient_penalty", "grad_norm", "r1_penalty", "r2_penalty")

Critic = Callable[[jax.Array], jax.Array]  # images [N, H, W, C] -> D output float32 [N, 1 + label_size]


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The adversarial loss and its penalties (the name is stored as the canonical one, not the alias)."""

    name: str = setting(
        "wgan",
        "adversarial loss: wgan, logistic (non_saturating), lsgan (least_squares), hinge or "
        "mmd (on model.critic_size features)",
    )
    gp_lambda: float = setting(10.0, "weight of the one-centred gradient penalty on interpolates (WGAN-GP; 0 = off)")
    gp_target: float = setting(1.0, "target gradient norm of that penalty")
    gp0_lambda: float = setting(0.0, "weight of the zero-centred gradient penalty on interpolates")
    r1_gamma: float = setting(0.0, "R1: gamma / 2 * ||grad D(real)||^2")
    r2_gamma: float = setting(0.0, "R2: gamma / 2 * ||grad D(fake)||^2")
    reg_interval: int = setting(0, "0 = penalties in every D step; k >= 1 = lazy, a penalty step every k D steps")
    drift: float = setting(0.001, "weight of D(real)^2 (official epsilon drift)")
    cond_weight: float = setting(1.0, "weight of the AC-GAN label terms (conditional models)")
    dat_epsilon: float = setting(
        0.0, "DAT: L-inf radius of the adversarial perturbation of D's reals and fakes (images in [-1, 1]; 0 = off)"
    )
    dat_steps: int = setting(1, "DAT: projected gradient ascent steps of that perturbation (1 = FGSM)")
    mmd_kernel: str = setting(
        "rq", "mmd: kernel mixture, 'rq' (rational quadratic, Binkowski et al.) or 'rbf' (Gaussian, Li et al.)"
    )

    def __post_init__(self):
        object.__setattr__(self, "name", LOSS_ALIASES.get(self.name, self.name))
        if self.name not in LOSSES + (MMD,):
            raise ValueError(
                f"loss.name must be one of {LOSSES + (MMD,)} (or {tuple(LOSS_ALIASES)}), got {self.name!r}"
            )
        if self.mmd_kernel not in MMD_KERNELS:
            raise ValueError(f"loss.mmd_kernel must be one of {MMD_KERNELS}, got {self.mmd_kernel!r}")
        extra = {
            "drift": self.drift,
            "r1_gamma": self.r1_gamma,
            "r2_gamma": self.r2_gamma,
            "gp0_lambda": self.gp0_lambda,
            "reg_interval": self.reg_interval,
            "dat_epsilon": self.dat_epsilon,
        }
        extra = [f"loss.{k}={v}" for k, v in extra.items() if v]
        if self.name == MMD and extra:
            raise ValueError(
                f"loss.name='mmd' takes only the gradient penalty on its witness (gp_lambda); set "
                f"{', '.join(extra)} to 0"
            )
        weights = {
            "gp_lambda": self.gp_lambda,
            "gp0_lambda": self.gp0_lambda,
            "r1_gamma": self.r1_gamma,
            "r2_gamma": self.r2_gamma,
            "drift": self.drift,
            "cond_weight": self.cond_weight,
        }
        negative = [f"loss.{k}={v}" for k, v in weights.items() if not v >= 0]
        if negative:
            raise ValueError(f"{', '.join(negative)}: loss weights must be >= 0")
        if not (isinstance(self.dat_epsilon, (int, float)) and 0 <= self.dat_epsilon < float("inf")):
            raise ValueError(f"loss.dat_epsilon must be a number >= 0 (0 = off), got {self.dat_epsilon!r}")
        if not isinstance(self.dat_steps, int) or isinstance(self.dat_steps, bool) or self.dat_steps < 1:
            raise ValueError(f"loss.dat_steps must be an integer >= 1, got {self.dat_steps!r}")
        if not self.gp_target > 0:
            raise ValueError(f"loss.gp_target must be > 0, got {self.gp_target}")
        if not isinstance(self.reg_interval, int) or self.reg_interval < 0:
            raise ValueError(f"loss.reg_interval must be an integer >= 0 (0 = not lazy), got {self.reg_interval!r}")
        if self.reg_interval and not self.has_gradient_penalty:
            raise ValueError(
                f"loss.reg_interval={self.reg_interval} needs a gradient penalty (gp_lambda, gp0_lambda, "
                "r1_gamma or r2_gamma > 0); set one or use reg_interval=0"
            )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LossConfig:
        return config_section.from_section(cls, config, "loss")

    @property
    def has_gradient_penalty(self) -> bool:
        return max(self.gp_lambda, self.gp0_lambda, self.r1_gamma, self.r2_gamma) > 0

    @property
    def lazy(self) -> bool:
        """Gradient penalties run as separate D steps every `reg_interval` D steps."""
        return self.reg_interval > 0

    @property
    def adam_correction(self) -> float:
        """c = k / (k + 1) for lazy regularization (D's lr * c, betas ** c), else 1."""
        return self.reg_interval / (self.reg_interval + 1) if self.lazy else 1.0


def d_adversarial(name: str, real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
    """Discriminator's adversarial term per sample. Scores: float32 [N]; name: one of LOSSES."""
    if name == "wgan":
        return fake_scores - real_scores
    if name == "logistic":
        return jax.nn.softplus(fake_scores) + jax.nn.softplus(-real_scores)
    if name == "lsgan":
        return 0.5 * (jnp.square(real_scores - 1.0) + jnp.square(fake_scores))
    return jax.nn.relu(1.0 - real_scores) + jax.nn.relu(1.0 + fake_scores)


def g_adversarial(name: str, fake_scores: jax.Array) -> jax.Array:
    """Generator's adversarial term per sample. Scores: float32 [N]; name: one of LOSSES."""
    if name == "logistic":
        return jax.nn.softplus(-fake_scores)
    if name == "lsgan":
        return 0.5 * jnp.square(fake_scores - 1.0)
    return -fake_scores  # wgan, hinge


def interpolate(reals: jax.Array, fakes: jax.Array, mix: jax.Array) -> jax.Array:
    """x_hat = reals + (fakes - reals) * mix; mix: float [N] in [0, 1]; images [N, H, W, C]."""
    return reals + (fakes - reals) * mix[:, None, None, None].astype(reals.dtype)


def one_centred_penalty(norms: jax.Array, target: float) -> jax.Array:
    """(||g|| - target)^2 / target^2 per sample (to be weighted by lambda)."""
    return jnp.square(norms - target) / (target**2)


def label_cross_entropy(label_logits: jax.Array, labels_onehot: jax.Array) -> jax.Array:
    """Softmax cross-entropy per sample. logits, labels: float [N, label_size]."""
    return optax.softmax_cross_entropy(label_logits.astype(jnp.float32), labels_onehot.astype(jnp.float32))


def mmd_kernel(kernel: str, x: jax.Array, y: jax.Array) -> jax.Array:
    """The kernel mixture `kernel` (MMD_KERNELS) between features x [N, F] and y [M, F]: float32 [N, M]."""
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    cross = jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST)
    squared = jnp.maximum(jnp.sum(x * x, axis=1)[:, None] + jnp.sum(y * y, axis=1)[None, :] - 2.0 * cross, 0.0)
    if kernel == "rq":
        return sum((1.0 + squared / (2.0 * a)) ** (-a) for a in RQ_ALPHAS)
    return sum(jnp.exp(-squared / (2.0 * s * s)) for s in RBF_SIGMAS)


def mmd2_unbiased(kernel: str, real_features: jax.Array, fake_features: jax.Array) -> jax.Array:
    """MMD^2_u between features [n, F] and [m, F] (n, m >= 2): float32 scalar (see the module docstring)."""
    n, m = real_features.shape[0], fake_features.shape[0]
    k_rr = mmd_kernel(kernel, real_features, real_features)
    k_ff = mmd_kernel(kernel, fake_features, fake_features)
    k_rf = mmd_kernel(kernel, real_features, fake_features)
    return (
        (jnp.sum(k_rr) - jnp.trace(k_rr)) / (n * (n - 1))
        + (jnp.sum(k_ff) - jnp.trace(k_ff)) / (m * (m - 1))
        - 2.0 * jnp.mean(k_rf)
    )


def mmd_witness(kernel: str, features: jax.Array, real_features: jax.Array, fake_features: jax.Array) -> jax.Array:
    """w(x) = mean_j k(h(x), h(r_j)) - mean_j k(h(x), h(f_j)) for features h(x) [N, F]: float32 [N]."""
    return jnp.mean(mmd_kernel(kernel, features, real_features), axis=1) - jnp.mean(
        mmd_kernel(kernel, features, fake_features), axis=1
    )


def _mmd_discriminator_loss(cfg: LossConfig, critic: Critic, reals, fakes, mix, penalties: bool, real_sign: bool):
    """`discriminator_loss` of the MMD loss: -MMD^2_u + gp_lambda * the witness's one-centred penalty."""
    real_features, fake_features = critic(reals), critic(fakes)
    loss = -mmd2_unbiased(cfg.mmd_kernel, real_features, fake_features)
    real_witness = mmd_witness(cfg.mmd_kernel, real_features, real_features, fake_features)
    aux = {
        "real_score": jnp.mean(real_witness),
        "fake_score": jnp.mean(mmd_witness(cfg.mmd_kernel, fake_features, real_features, fake_features)),
    }
    if real_sign:
        aux["real_sign"] = jnp.mean(jnp.sign(real_witness))
    if penalties and cfg.gp_lambda > 0:

        def witness(images):
            return mmd_witness(cfg.mmd_kernel, critic(images), real_features, fake_features)[:, None]

        penalty, penalty_aux = _interpolate_penalties(cfg, witness, reals, fakes, mix)
        loss, aux = loss + jnp.mean(penalty), {**aux, **penalty_aux}
    return loss, aux


def adversarial_inputs(cfg: LossConfig, critic: Critic, reals: jax.Array, fakes: jax.Array):
    """DAT's perturbed (reals, fakes), float [N, H, W, C], each within dat_epsilon of the clean image in
    L-inf, ascending the sum of D's adversarial loss (see the module docstring); no gradient flows
    through them."""
    epsilon, steps = cfg.dat_epsilon, cfg.dat_steps
    step_size = epsilon if steps == 1 else 2.5 * epsilon / steps

    def objective(deltas):
        delta_real, delta_fake = deltas
        real_scores, fake_scores = critic(reals + delta_real)[:, 0], critic(fakes + delta_fake)[:, 0]
        return jnp.sum(d_adversarial(cfg.name, real_scores, fake_scores))

    deltas = (jnp.zeros_like(reals), jnp.zeros_like(fakes))
    for _ in range(steps):
        grads = jax.grad(objective)(deltas)
        deltas = jax.tree.map(lambda d, g: jnp.clip(d + step_size * jnp.sign(g), -epsilon, epsilon), deltas, grads)
    return jax.lax.stop_gradient(reals + deltas[0]), jax.lax.stop_gradient(fakes + deltas[1])


def _scores(critic: Critic, images: jax.Array, with_grads: bool):
    """(D output [N, 1 + L], squared input-gradient norms [N] or None)."""
    if with_grads:
        return scores_and_squared_input_grads(critic, images)
    return critic(images), None


def _interpolate_penalties(cfg: LossConfig, critic: Critic, reals: jax.Array, fakes: jax.Array, mix: jax.Array):
    """Weighted one- and zero-centred penalties at interpolates, per sample [N], and their aux means."""
    _, squared = scores_and_squared_input_grads(critic, interpolate(reals, fakes, mix))
    norms = safe_norm(squared)
    penalty = cfg.gp0_lambda * squared if cfg.gp0_lambda > 0 else 0.0
    aux = {"grad_norm": jnp.mean(norms)}
    if cfg.gp_lambda > 0:
        one_centred = one_centred_penalty(norms, cfg.gp_target)
        penalty = penalty + cfg.gp_lambda * one_centred
        aux["gradient_penalty"] = jnp.mean(one_centred)
    return penalty, aux


def _gradient_penalties(cfg: LossConfig, critic: Critic, reals, fakes, mix, real_squared, fake_squared):
    """Every configured gradient penalty per sample [N] (weighted), and their aux means.

    R1 and R2 come from the squared input-gradient norms of the reals and fakes (None when off);
    the penalties on interpolates are computed here.
    """
    penalty, aux = 0.0, {}
    if real_squared is not None:
        penalty = penalty + 0.5 * cfg.r1_gamma * real_squared
        aux["r1_penalty"] = jnp.mean(real_squared)
    if fake_squared is not None:
        penalty = penalty + 0.5 * cfg.r2_gamma * fake_squared
        aux["r2_penalty"] = jnp.mean(fake_squared)
    if cfg.gp_lambda > 0 or cfg.gp0_lambda > 0:
        interpolate_penalty, interpolate_aux = _interpolate_penalties(cfg, critic, reals, fakes, mix)
        penalty, aux = penalty + interpolate_penalty, {**aux, **interpolate_aux}
    return penalty, aux


def discriminator_loss(
    cfg: LossConfig,
    critic: Critic,
    reals: jax.Array,
    fakes: jax.Array,
    mix: jax.Array,
    labels_onehot: jax.Array | None,
    *,
    penalties: bool = True,
    real_sign: bool = False,
):
    """Per-device D loss on one minibatch.

    Args:
      cfg: the loss configuration.
      critic: images [N, H, W, C] -> D output float32 [N, 1 + label_size]. D is called separately on
        reals, fakes and interpolates (minibatch stddev sees one kind of image at a time).
      reals, fakes: float [N, H, W, C] in about [-1, 1] (reals already mirrored and faded).
      mix: float32 [N] interpolation factors in [0, 1].
      labels_onehot: float [N, label_size] or None.
      penalties: include the gradient penalties (False for the main step of lazy regularization).
      real_sign: also return 'real_sign', the mean of sign(D(real)) (ADA's overfitting heuristic r_t).

    Returns:
      (scalar loss = mean over samples, dict of per-batch means: real/fake scores, 'real_sign' if asked
      and, for the penalties computed, the PENALTY_METRICS they define).
    """
    if cfg.name == MMD:
        return _mmd_discriminator_loss(cfg, critic, reals, fakes, mix, penalties, real_sign)
    if cfg.dat_epsilon > 0:
        reals, fakes = adversarial_inputs(cfg, critic, reals, fakes)
    with_r1, with_r2 = penalties and cfg.r1_gamma > 0, penalties and cfg.r2_gamma > 0
    real_out, real_squared = _scores(critic, reals, with_r1)
    fake_out, fake_squared = _scores(critic, fakes, with_r2)
    real_scores, fake_scores = real_out[:, 0], fake_out[:, 0]
    loss = d_adversarial(cfg.name, real_scores, fake_scores)
    aux = {"real_score": jnp.mean(real_scores), "fake_score": jnp.mean(fake_scores)}
    if real_sign:
        aux["real_sign"] = jnp.mean(jnp.sign(real_scores))
    if penalties:
        penalty, penalty_aux = _gradient_penalties(cfg, critic, reals, fakes, mix, real_squared, fake_squared)
        loss, aux = loss + penalty, {**aux, **penalty_aux}
    if cfg.drift > 0:
        loss = loss + cfg.drift * jnp.square(real_scores)
    if labels_onehot is not None:
        loss = loss + cfg.cond_weight * (
            label_cross_entropy(real_out[:, 1:], labels_onehot) + label_cross_entropy(fake_out[:, 1:], labels_onehot)
        )
    return jnp.mean(loss), aux


def penalty_loss(cfg: LossConfig, critic: Critic, reals: jax.Array, fakes: jax.Array, mix: jax.Array):
    """The lazy penalty step's loss: reg_interval * (all gradient penalties), mean over samples.

    Same arguments as `discriminator_loss` (DAT's perturbation included); returns (scalar loss, dict of
    PENALTY_METRICS means).
    """
    if cfg.dat_epsilon > 0:
        reals, fakes = adversarial_inputs(cfg, critic, reals, fakes)
    real_squared = scores_and_squared_input_grads(critic, reals)[1] if cfg.r1_gamma > 0 else None
    fake_squared = scores_and_squared_input_grads(critic, fakes)[1] if cfg.r2_gamma > 0 else None
    loss, aux = _gradient_penalties(cfg, critic, reals, fakes, mix, real_squared, fake_squared)
    return cfg.reg_interval * jnp.mean(loss), aux


def generator_loss(
    cfg: LossConfig, critic: Critic, fakes: jax.Array, labels_onehot: jax.Array | None, reals: jax.Array | None = None
) -> jax.Array:
    """Per-device G loss (scalar, mean over samples) for fakes [N, H, W, C] made from labels_onehot.

    reals: float [N, H, W, C], the MMD loss's reference batch (None for the other losses).
    """
    if cfg.name == MMD:
        return mmd2_unbiased(cfg.mmd_kernel, critic(reals), critic(fakes))
    fake_out = critic(fakes)
    loss = g_adversarial(cfg.name, fake_out[:, 0])
    if labels_onehot is not None:
        loss = loss + cfg.cond_weight * label_cross_entropy(fake_out[:, 1:], labels_onehot)
    return jnp.mean(loss)
