"""Lipschitz constraints of the discriminator: spectral normalization (SN), gradient normalization (GraN)
and weight clipping.

All act on the discriminator from outside the network code: SN rewrites D's parameter tree before
the forward pass, GraN wraps the critic function, clipping follows every D optimizer step.
`config.d_normalization.method` chooses one (so none of them combines with another):

- 'none' (default, the official PGGAN): D as it is.
- 'spectral' (Miyato et al. 2018): every weight layer of D (convolutions, dense layers, from_rgb)
  computes with W / sigma(W), sigma the largest singular value of the kernel reshaped to a matrix
  [k * k * in, out]. With equalized learning rate, W is the *runtime-scaled* weight
  (kernel * gain / sqrt(fan_in)); since W / sigma(W) does not depend on the scale, the effective weight
  is kernel / sigma(kernel) whatever the He constant, which then only shapes the learning dynamics.
  sigma is estimated by power iteration with a vector u [out] per layer, kept in the training state
  (`TrainState['spectral_u']`, checkpointed): sigma(W) ~ ||M u|| with M = W as [in, out], u a unit
  vector. The gradient flows through M only (u is a constant, as in the reference implementation).
  Which forward passes update u: exactly one update (of `power_iterations` iterations) per
  discriminator optimizer step, at its start, from the parameters before the step; that u serves
  all of the step's D forward passes (reals, fakes, interpolates) and is stored. The G step, the
  lazy penalty step and sampling use the stored u unchanged.
- 'gran' (Bhaskara et al. 2022, "GraN-GAN: Piecewise Gradient Normalization for GANs"): the critic
  score f(x) (column 0 of D's output) is replaced by
      g(x) = K * f(x) * ||grad_x f(x)|| / (||grad_x f(x)||^2 + epsilon),
  with the input gradient taken per sample (of the batch sum, like the gradient penalty). For a
  piecewise-linear f (leaky ReLU networks) g is piecewise K-Lipschitz: inside each linear piece
  ||grad g|| = K * ||grad f||^2 / (||grad f||^2 + epsilon) < K, and |g(x)| <= K |f(x)| / ||grad f(x)||.
  Class logits (AC-GAN columns) are left as they are. Every D evaluation, in the G step too, then
  needs an input gradient: D and G steps cost about twice as much, penalties on top a third order.
- 'clip' (WGAN, Arjovsky et al. 2017): after every D optimizer step (the lazy penalty step included,
  after the gradients of all microbatches were averaged) every parameter of D, weights and biases,
  is clipped to [-clip_value, clip_value]. With equalized learning rate the stored (unscaled) kernels
  are clipped, so the weights D computes with lie in [-c * s, c * s], s the layer's He constant.
  WGAN trains it with RMSProp (`config.optimizer.name=rmsprop`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from pggan import config_section
from pggan.config_section import setting
from pggan.model import layers

METHODS = ("none", "spectral", "gran", "clip")
STATE_ITEM = "spectral_u"  # the TrainState item holding SN's power-iteration vectors


@dataclasses.dataclass(frozen=True)
class NormalizationConfig:
    """D's Lipschitz normalization (see the module docstring)."""

    method: str = setting(
        "none",
        "'none', 'spectral' (spectral normalization), 'gran' (gradient normalization) or "
        "'clip' (WGAN weight clipping); one method at a time",
    )
    power_iterations: int = setting(1, "spectral: power iterations per D step (>= 1)")
    gran_k: float = setting(1.0, "GraN: the Lipschitz constant K (> 0)")
    gran_epsilon: float = setting(1e-4, "GraN: epsilon (> 0)")
    clip_value: float = setting(0.01, "clip: every D parameter is clipped to [-clip_value, clip_value] (> 0)")

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"d_normalization.method must be one of {METHODS}, got {self.method!r}")
        if not isinstance(self.power_iterations, int) or self.power_iterations < 1:
            raise ValueError(f"d_normalization.power_iterations must be an integer >= 1, got {self.power_iterations!r}")
        if not (self.gran_k > 0 and self.gran_epsilon > 0):
            raise ValueError("d_normalization.gran_k and gran_epsilon must be > 0")
        if not (isinstance(self.clip_value, (int, float)) and 0 < self.clip_value < float("inf")):
            raise ValueError(f"d_normalization.clip_value must be a positive number, got {self.clip_value!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> NormalizationConfig:
        return config_section.from_section(cls, config, "d_normalization")


# ------------------------------------------------------------------------------------ spectral norm


def _unit(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x), 1e-12)


def kernel_matrix(kernel: jax.Array) -> jax.Array:
    """A kernel (HWIO [k, k, in, out] or dense [in, out]) as the matrix [k * k * in, out]."""
    return kernel.reshape(-1, kernel.shape[-1])


def power_iterate(matrix: jax.Array, u: jax.Array, iterations: int) -> jax.Array:
    """`iterations` power-iteration steps v = unit(M u), u = unit(M^T v); matrix float32 [in, out], u [out]."""
    hi = jax.lax.Precision.HIGHEST
    for _ in range(iterations):
        v = _unit(jnp.matmul(matrix, u, precision=hi))
        u = _unit(jnp.matmul(matrix.T, v, precision=hi))
    return u


def sigma_estimate(matrix: jax.Array, u: jax.Array) -> jax.Array:
    """||M u||: the largest singular value of M [in, out] once u [out] has converged (a lower bound before)."""
    return jnp.linalg.norm(jnp.matmul(matrix, jax.lax.stop_gradient(u), precision=jax.lax.Precision.HIGHEST))


def _get(tree: dict, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


def _nested_set(tree: dict, path: tuple, value) -> dict:
    """A copy of nested dict `tree` with tree[path[0]]...[path[-1]] = value (copies only the dicts on the path)."""
    if len(path) == 1:
        return {**tree, path[0]: value}
    return {**tree, path[0]: _nested_set(tree.get(path[0], {}), path[1:], value)}


class SpectralNorm:
    """Spectral normalization of every weight layer of a Discriminator's parameter tree.

    Vectors: a nested dict like the parameters, {'blocks': {0: {'conv': u, ...}}, 'from_rgb': {0: u}},
    each u float32 [out] of unit length.
    """

    def __init__(self, discriminator: nnx.Module):
        """discriminator: the (abstract) Discriminator whose parameter trees this instance normalizes."""
        self.layers = [
            (tuple(path), node.runtime_scale, node.kernel.shape[-1])
            for path, node in nnx.iter_graph(discriminator)
            if isinstance(node, (layers.EqualizedConv, layers.EqualizedDense))
        ]

    def init_vectors(self, key: jax.Array) -> dict:
        """Random unit vectors u [out] per layer, drawn from `key`."""
        vectors: dict = {}
        for i, (path, _, out) in enumerate(self.layers):
            u = _unit(jax.random.normal(jax.random.fold_in(key, i), (out,), jnp.float32))
            vectors = _nested_set(vectors, path, u)
        return vectors

    def update_vectors(self, params: dict, vectors: dict, iterations: int) -> dict:
        """`iterations` power iterations per layer from the current kernels (no gradient flows into u)."""
        params = jax.lax.stop_gradient(params)
        updated: dict = {}
        for path, _, _ in self.layers:
            matrix = kernel_matrix(_get(params, path)["kernel"])
            updated = _nested_set(updated, path, power_iterate(matrix, _get(vectors, path), iterations))
        return updated

    def normalize(self, params: dict, vectors: dict) -> dict:
        """Parameters whose layers compute with W / sigma(W), W the runtime-scaled weight.

        The layer multiplies its kernel by the runtime scale s, so the stored kernel is replaced by
        kernel / (s * sigma(kernel)) and the layer computes kernel / sigma(kernel) = W / sigma(W).
        Differentiable in `params` (sigma included); biases are untouched.
        """
        for path, scale, _ in self.layers:
            kernel = _get(params, path)["kernel"]
            sigma = sigma_estimate(kernel_matrix(kernel), _get(vectors, path))
            params = _nested_set(params, path + ("kernel",), kernel / (scale * sigma))
        return params

    def effective_weights(self, params: dict, vectors: dict) -> dict:
        """{path: the weight matrix [in, out] a layer computes with after normalization} (for checks)."""
        normalized = self.normalize(params, vectors)
        return {path: kernel_matrix(_get(normalized, path)["kernel"]) * scale for path, scale, _ in self.layers}


# ------------------------------------------------------------------------------------------- GraN


def safe_norm(squared: jax.Array) -> jax.Array:
    """sqrt(squared) with a zero (not NaN) gradient where squared == 0."""
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def scores_and_squared_input_grads(critic: Callable[[jax.Array], jax.Array], images: jax.Array):
    """(critic(images) float32 [N, 1 + L], ||d sum(score) / d image_n||^2 float32 [N]) in one forward pass.

    The score is column 0; its gradient is taken w.r.t. every image of the batch at once, as the
    official gradient penalty does (minibatch stddev couples the samples). Differentiable again.
    """
    out, pullback = jax.vjp(critic, images)
    (grads,) = pullback(jnp.zeros_like(out).at[:, 0].set(1.0))
    return out, jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=tuple(range(1, grads.ndim)))


def gran(critic: Callable[[jax.Array], jax.Array], k: float, epsilon: float) -> Callable[[jax.Array], jax.Array]:
    """GraN-normalized critic: column 0 becomes K f ||grad f|| / (||grad f||^2 + epsilon), other columns kept."""

    def normalized(images: jax.Array) -> jax.Array:
        out, squared = scores_and_squared_input_grads(critic, images)
        score = k * out[:, 0] * safe_norm(squared) / (squared + epsilon)
        return out.at[:, 0].set(score)

    return normalized


# ------------------------------------------------------------------------------------ weight clipping


def clip_parameters(params, clip_value: float):
    """Every leaf of D's parameter tree clipped to [-clip_value, clip_value] (same tree, dtypes kept)."""
    return jax.tree.map(lambda p: jnp.clip(p, -clip_value, clip_value), params)
