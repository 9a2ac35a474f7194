"""Differentiable augmentation of every image D sees, for training on a few hundred images.

DiffAugment (Zhao et al. 2020) and ADA (Karras et al. 2020) let D see only augmented images, reals
and fakes alike, with transforms differentiable in the image so that G's gradient passes through
them. `config.augment.policy` names the transforms (OPS, applied in this order):

- 'xflip':       left-right flip with probability 1/2 (ADA's blit xflip).
- 'rotate90':    rotation by k * 90 degrees, k uniform in {0, 1, 2, 3} (ADA's blit rotate; square images).
- 'color':       DiffAugment's three colour transforms, each its own op: brightness x + b, b ~ U(-0.5, 0.5);
                 saturation (x - m_c) * s + m_c, s ~ U(0, 2), m_c the pixel's mean over channels;
                 contrast (x - m) * c + m, c ~ U(0.5, 1.5), m the image's mean.
- 'translation': integer shift (dy, dx), each uniform in {-t, ..., t} with t = round(size / 8), the
                 uncovered pixels 0 (DiffAugment's, which is also ADA's integer translation).
- 'cutout':      a square of side round(size / 2), its centre uniform over the image (it may reach
                 past the border), set to 0 (DiffAugment's).
Aliases: 'diffaugment' = color,translation,cutout; 'ada' = xflip,rotate90,color,translation (ADA's blit
and colour groups; its resampled geometric transforms, scaling and arbitrary rotation, are not here).

Every op is applied to an image with probability p, independently per op and per image (ADA's
scheme; DiffAugment is p = 1): p = 0 is the identity, exactly. Images are float [N, H, W, C] in about
[-1, 1]; the parameters of each image come from `draw` (per sample, from a key of its global sample
id), so results do not depend on the device count.

Leaking: ADA shows that D's augmentations leak into G's images unless every transform is applied
with probability p < 1 (then the augmented distribution determines the clean one). Each op here is
gated that way; with a fixed p = 1 (DiffAugment) the transforms must instead be ones G cannot learn
to imitate cheaply, which holds for translation, cutout and colour jitter in DiffAugment's study
but not for rotations and flips.

Adaptive p (ADA): with `target` > 0, p starts at `probability` and, every `interval` D steps,
moves by sign(r_t - target) * interval * minibatch / (speed_kimg * 1000), clipped to [0, 1], where
r_t = E[sign(D(augmented real))] over those steps (D's overfitting heuristic). The state, p and the
running sums, is the TrainState item STATE_ITEM (checkpointed: a resumed run continues exactly).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from pggan import config_section
from pggan.config_section import is_int_at_least, is_number_at_least, require, setting

OPS = ("xflip", "rotate90", "color", "translation", "cutout")
ALIASES = {"diffaugment": ("color", "translation", "cutout"), "ada": ("xflip", "rotate90", "color", "translation")}
# Per-image gates, one per transform (colour counts three).
GATES = ("xflip", "rotate90", "brightness", "saturation", "contrast", "translation", "cutout")
STATE_ITEM = "augment"  # the TrainState item of adaptive p


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Differentiable augmentation of D's inputs (see the module docstring); the policy is stored as its op names."""

    policy: str = setting(
        "",
        "'' (off) or comma-separated ops among xflip, rotate90, color, translation, cutout; "
        "or 'diffaugment' (color,translation,cutout) or 'ada' (xflip,rotate90,color,translation)",
    )
    probability: float = setting(1.0, "probability of each op per image, in [0, 1]; the initial p when adaptive")
    target: float = setting(
        0.0, "0 = fixed p; > 0: ADA's adaptive p, aiming at r_t = E[sign(D(real))] = target (ADA: 0.6)"
    )
    speed_kimg: float = setting(500.0, "adaptive: thousands of images for p to rise from 0 to 1 (ADA: 500)")
    interval: int = setting(4, "adaptive: D steps between updates of p (ADA: 4)")

    def __post_init__(self):
        names = ALIASES.get(self.policy, tuple(op.strip() for op in self.policy.split(",") if op.strip()))
        unknown = [op for op in names if op not in OPS]
        require(
            not unknown and len(set(names)) == len(names),
            f"config.augment.policy must be '' or distinct ops among {OPS} (or {tuple(ALIASES)}), got {self.policy!r}",
        )
        object.__setattr__(self, "policy", ",".join(op for op in OPS if op in names))
        require(
            is_number_at_least(self.probability, 0) and self.probability <= 1,
            f"config.augment.probability must be in [0, 1], got {self.probability}",
        )
        require(
            is_number_at_least(self.target, 0) and self.target < 1,
            f"config.augment.target must be in [0, 1) (0 = fixed p), got {self.target}",
        )
        require(
            is_number_at_least(self.speed_kimg, 0) and self.speed_kimg > 0,
            f"config.augment.speed_kimg must be a positive number, got {self.speed_kimg}",
        )
        require(
            is_int_at_least(self.interval, 1), f"config.augment.interval must be an integer >= 1, got {self.interval!r}"
        )
        require(not self.target or self.policy, "config.augment.target > 0 needs a config.augment.policy")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AugmentConfig:
        return config_section.from_section(cls, config, "augment")

    @property
    def ops(self) -> tuple[str, ...]:
        """The ops applied, in OPS order (() when off)."""
        return tuple(self.policy.split(",")) if self.policy else ()

    @property
    def adaptive(self) -> bool:
        return bool(self.policy) and self.target > 0

    def initial_state(self) -> dict:
        """The adaptive state: p (float32), the sum of r over the steps since the last update (float32)
        and their count (int32)."""
        return {"p": jnp.float32(self.probability), "sign_sum": jnp.float32(0), "steps": jnp.int32(0)}

    def update_state(self, state: dict, real_sign: jax.Array, minibatch: int) -> dict:
        """The adaptive state after a D step whose mean of sign(D(real)) (float32, all devices) was real_sign."""
        sign_sum, steps = state["sign_sum"] + real_sign, state["steps"] + 1
        due = steps >= self.interval
        step_size = self.interval * minibatch / (self.speed_kimg * 1000)
        moved = jnp.clip(state["p"] + jnp.sign(sign_sum / self.interval - self.target) * step_size, 0.0, 1.0)
        return {
            "p": jnp.where(due, moved, state["p"]).astype(jnp.float32),
            "sign_sum": jnp.where(due, 0.0, sign_sum).astype(jnp.float32),
            "steps": jnp.where(due, 0, steps).astype(jnp.int32),
        }


def translation_range(size: int) -> int:
    """t of the translation op: shifts in {-t, ..., t} (DiffAugment: int(size / 8 + 0.5))."""
    return int(size * 0.125 + 0.5)


def cutout_size(size: int) -> int:
    """Side of the cutout square (DiffAugment: int(size / 2 + 0.5))."""
    return int(size * 0.5 + 0.5)


def draw(key: jax.Array, p: jax.Array, size: int) -> dict:
    """One image's random parameters: gates (bool [len(GATES)], each true with probability p), flip (bool),
    rotation (int32 in [0, 3]), brightness, saturation, contrast (float32), shift (int32 [2]: dy, dx) and
    cutout (int32 [2]: the square's first row and column, possibly negative)."""
    keys = jax.random.split(key, 8)
    t, side = translation_range(size), cutout_size(size)
    offset = jax.random.randint(keys[7], (2,), 0, size + (1 - side % 2))
    return {
        "gates": jax.random.uniform(keys[0], (len(GATES),)) < p,
        "flip": jax.random.bernoulli(keys[1]),
        "rotation": jax.random.randint(keys[2], (), 0, 4),
        "brightness": jax.random.uniform(keys[3]) - 0.5,
        "saturation": jax.random.uniform(keys[4]) * 2.0,
        "contrast": jax.random.uniform(keys[5]) + 0.5,
        "shift": jax.random.randint(keys[6], (2,), -t, t + 1),
        "cutout": offset - side // 2,
    }


def _shift(x: jax.Array, offset: jax.Array, axis: int) -> jax.Array:
    """x moved by `offset` (int) along `axis` (0 or 1 of [H, W, C]): out[i] = x[i - offset], 0 outside."""
    n = x.shape[axis]
    source = jnp.arange(n) - offset
    valid = (source >= 0) & (source < n)
    moved = jnp.take(x, jnp.clip(source, 0, n - 1), axis=axis)
    mask = valid[:, None, None] if axis == 0 else valid[None, :, None]
    return jnp.where(mask, moved, jnp.zeros_like(moved))


def _augment_one(x: jax.Array, params: dict, ops: tuple[str, ...]) -> jax.Array:
    """One image [H, W, C] through the ops of `ops`, each where its gate is true."""
    gate = dict(zip(GATES, params["gates"]))
    if "xflip" in ops:
        x = jnp.where(gate["xflip"] & params["flip"], x[:, ::-1], x)
    if "rotate90" in ops:
        rotated = jnp.stack([jnp.rot90(x, k, axes=(0, 1)) for k in range(4)])[params["rotation"]]
        x = jnp.where(gate["rotate90"], rotated, x)
    if "color" in ops:
        x = jnp.where(gate["brightness"], x + params["brightness"].astype(x.dtype), x)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        x = jnp.where(gate["saturation"], (x - mean) * params["saturation"].astype(x.dtype) + mean, x)
        mean = jnp.mean(x)
        x = jnp.where(gate["contrast"], (x - mean) * params["contrast"].astype(x.dtype) + mean, x)
    if "translation" in ops:
        dy, dx = params["shift"][0], params["shift"][1]
        x = jnp.where(gate["translation"], _shift(_shift(x, dy, 0), dx, 1), x)
    if "cutout" in ops:
        side = cutout_size(x.shape[0])
        rows, cols = jnp.arange(x.shape[0]), jnp.arange(x.shape[1])
        in_rows = (rows >= params["cutout"][0]) & (rows < params["cutout"][0] + side)
        in_cols = (cols >= params["cutout"][1]) & (cols < params["cutout"][1] + side)
        box = in_rows[:, None, None] & in_cols[None, :, None] & gate["cutout"]
        x = jnp.where(box, jnp.zeros_like(x), x)
    return x


def augment(images: jax.Array, params: dict, ops: tuple[str, ...]) -> jax.Array:
    """images float [N, H, W, C] (H = W when rotating) through `ops` with per-image `params` (`draw`'s, each
    with a leading axis N). Differentiable in `images`; the identity where every gate is false."""
    return jax.vmap(lambda x, p: _augment_one(x, p, ops))(images, params)


def augmented_critic(critic, params: dict, ops: tuple[str, ...]):
    """images -> critic(augment(images, params, ops)): D as it sees every image under augmentation."""
    return lambda images: critic(augment(images, params, ops))
