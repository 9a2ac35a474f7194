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
- 'geometric':   ADA's resampled geometric transforms, composed into one affine map of the pixel grid
                 (about the image centre, in pixels) in this order, each with its own gate: isotropic
                 scaling by s = 2^N(0, 0.2^2); rotation by theta ~ U(-pi, pi); anisotropic scaling by
                 (a, 1/a) along (x, y), a = 2^N(0, 0.2^2); a second rotation, theta' ~ U(-pi, pi);
                 fractional translation by (ty, tx) ~ N(0, (0.125 size)^2) pixels each. The two
                 rotations are each gated with probability 1 - sqrt(1 - p), so that some rotation
                 happens with probability p (ADA's rule). Output pixel (i, j) takes the input at
                 G^-1 (i, j), bilinearly interpolated, the image extended by reflection about its
                 border pixels (reflect-101, no repeated edge; ADA's reflect padding).
- 'ada_color':   ADA's colour transforms, each with its own gate, as affine maps of the channel vector
                 x (in order): brightness x + b, b ~ N(0, 0.2^2); contrast c x, c = 2^N(0, 0.5^2);
                 luma flip x - 2 v v.x with probability 1/2 (v = (1, ..., 1) / sqrt(C), the luma
                 axis); hue rotation about v by h ~ U(-pi, pi) (3 channels; the identity otherwise);
                 saturation v v.x + s (x - v v.x), s = 2^N(0, 1).
- 'cutout':      a square of side round(size / 2), its centre uniform over the image (it may reach
                 past the border), set to 0 (DiffAugment's).
Aliases: 'diffaugment' = color,translation,cutout; 'ada' = xflip,rotate90,color,translation (ADA's blit
group with DiffAugment's colour; the few_images recipe's); 'bgc' = xflip,rotate90,translation,
geometric,ada_color (ADA's full 'bgc' pipeline: blit, geometric and colour groups).

Every op is applied to an image with probability p, independently per op and per image (ADA's
scheme; DiffAugment is p = 1): p = 0 is the identity, exactly. Images are float [N, H, W, C] in about
[-1, 1]; the parameters of each image come from `draw` (per sample, from a key of its global sample
id), so results do not depend on the device count.

Leaking: ADA shows that D's augmentations leak into G's images unless every transform is applied
with probability p < 1 (then the augmented distribution determines the clean one). Each op here is
gated that way; with a fixed p = 1 (DiffAugment) the transforms must instead be ones G cannot learn
to imitate cheaply, which holds for translation, cutout and colour jitter in DiffAugment's study
but not for rotations, flips and the geometric and ADA colour groups (use those with p < 1: the
adaptive p, target > 0, keeps p where D stops overfitting, far below 1 in ADA's runs).

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

OPS = ("xflip", "rotate90", "color", "translation", "geometric", "ada_color", "cutout")
ALIASES = {
    "diffaugment": ("color", "translation", "cutout"),
    "ada": ("xflip", "rotate90", "color", "translation"),
    "bgc": ("xflip", "rotate90", "translation", "geometric", "ada_color"),
}
# Per-image gates, one per transform: DiffAugment's colour op counts three, 'geometric' five, 'ada_color' five.
_FIRST_GATES = ("xflip", "rotate90", "brightness", "saturation", "contrast", "translation", "cutout")
GEOMETRIC_GATES = ("scale", "rotate", "aniso", "rotate_post", "xfrac")
ADA_COLOR_GATES = ("ada_brightness", "ada_contrast", "lumaflip", "hue", "ada_saturation")
GATES = _FIRST_GATES + GEOMETRIC_GATES + ADA_COLOR_GATES
# ADA's standard deviations: log2 of the scale factors, the fractional translation (of the size), the
# brightness offset, log2 of the contrast and saturation factors.
SCALE_STD, ANISO_STD, XFRAC_STD = 0.2, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, SATURATION_STD = 0.2, 0.5, 1.0
STATE_ITEM = "augment"  # the TrainState item of adaptive p


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Differentiable augmentation of D's inputs (see the module docstring); the policy is stored as its op names."""

    policy: str = setting(
        "",
        "'' (off) or comma-separated ops among xflip, rotate90, color, translation, geometric, ada_color, "
        "cutout; or 'diffaugment' (color,translation,cutout), 'ada' (xflip,rotate90,color,translation) or "
        "'bgc' (ADA's full pipeline: xflip,rotate90,translation,geometric,ada_color)",
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
    """One image's random parameters, for every op (see the module docstring for their distributions).

    gates: bool [len(GATES)], each true with probability p (the two rotations of 'geometric' with
    1 - sqrt(1 - p)); flip (bool), rotation (int32 in [0, 3]), brightness, saturation, contrast (float32),
    shift (int32 [2]: dy, dx), cutout (int32 [2]: the square's first row and column, possibly negative);
    'geometric': scale, aniso (float32 factors), angles (float32 [2], radians), xfrac (float32 [2]:
    ty, tx in pixels); 'ada_color': ada_brightness, ada_contrast, hue (radians), ada_saturation
    (float32), lumaflip (bool).
    """
    keys = jax.random.split(key, 8)
    t, side = translation_range(size), cutout_size(size)
    offset = jax.random.randint(keys[7], (2,), 0, size + (1 - side % 2))
    # The geometric and ADA colour parameters come from keys of their own, so that adding them left the
    # draws of the first ops unchanged.
    more = jax.random.split(jax.random.fold_in(key, 1), 10)
    rotations = jnp.array([gate in ("rotate", "rotate_post") for gate in GEOMETRIC_GATES + ADA_COLOR_GATES])
    probabilities = jnp.where(rotations, 1.0 - jnp.sqrt(1.0 - p), p)
    return {
        "gates": jnp.concatenate(
            [
                jax.random.uniform(keys[0], (len(_FIRST_GATES),)) < p,
                jax.random.uniform(more[0], (len(probabilities),)) < probabilities,
            ]
        ),
        "flip": jax.random.bernoulli(keys[1]),
        "rotation": jax.random.randint(keys[2], (), 0, 4),
        "brightness": jax.random.uniform(keys[3]) - 0.5,
        "saturation": jax.random.uniform(keys[4]) * 2.0,
        "contrast": jax.random.uniform(keys[5]) + 0.5,
        "shift": jax.random.randint(keys[6], (2,), -t, t + 1),
        "cutout": offset - side // 2,
        "scale": 2.0 ** (jax.random.normal(more[1]) * SCALE_STD),
        "angles": jax.random.uniform(more[2], (2,), minval=-jnp.pi, maxval=jnp.pi),
        "aniso": 2.0 ** (jax.random.normal(more[3]) * ANISO_STD),
        "xfrac": jax.random.normal(more[4], (2,)) * (XFRAC_STD * size),
        "ada_brightness": jax.random.normal(more[5]) * BRIGHTNESS_STD,
        "ada_contrast": 2.0 ** (jax.random.normal(more[6]) * CONTRAST_STD),
        "lumaflip": jax.random.bernoulli(more[7]),
        "hue": jax.random.uniform(more[8], minval=-jnp.pi, maxval=jnp.pi),
        "ada_saturation": 2.0 ** (jax.random.normal(more[9]) * SATURATION_STD),
    }


def _shift(x: jax.Array, offset: jax.Array, axis: int) -> jax.Array:
    """x moved by `offset` (int) along `axis` (0 or 1 of [H, W, C]): out[i] = x[i - offset], 0 outside."""
    n = x.shape[axis]
    source = jnp.arange(n) - offset
    valid = (source >= 0) & (source < n)
    moved = jnp.take(x, jnp.clip(source, 0, n - 1), axis=axis)
    mask = valid[:, None, None] if axis == 0 else valid[None, :, None]
    return jnp.where(mask, moved, jnp.zeros_like(moved))


def geometric_matrix(params: dict, gate: dict) -> jax.Array:
    """The 'geometric' map as a float32 [3, 3] affine matrix on (x, y, 1), x to the right and y down, in pixels
    about the image centre: the forward map, scaling first; transforms whose gate is false are left out.
    A rotation by theta turns the x axis towards the y axis (clockwise on screen)."""

    def rotation(angle):
        c, s = jnp.cos(angle), jnp.sin(angle)
        return jnp.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def scaling(sx, sy):
        return jnp.diag(jnp.stack([sx, sy, jnp.float32(1)]))

    one = jnp.float32(1)
    steps = (
        ("scale", scaling(params["scale"], params["scale"])),
        ("rotate", rotation(params["angles"][0])),
        ("aniso", scaling(params["aniso"], one / params["aniso"])),
        ("rotate_post", rotation(params["angles"][1])),
        ("xfrac", jnp.eye(3).at[:2, 2].set(params["xfrac"][::-1])),  # (tx, ty)
    )
    matrix = jnp.eye(3)
    for name, step in steps:
        matrix = jnp.where(gate[name], step @ matrix, matrix)
    return matrix


def _reflect(coordinate: jax.Array, size: int) -> jax.Array:
    """Continuous coordinates folded into [0, size - 1] by reflection about the border pixels (reflect-101)."""
    if size == 1:
        return jnp.zeros_like(coordinate)
    period = 2 * (size - 1)
    folded = jnp.mod(coordinate, period)
    return jnp.where(folded > size - 1, period - folded, folded)


def resample(x: jax.Array, matrix: jax.Array) -> jax.Array:
    """x [H, W, C] under the forward affine map `matrix` ([3, 3], pixels about the centre, see
    geometric_matrix): out(i, j) = x at matrix^-1 (j - cx, i - cy) + (cx, cy), bilinear, reflect-101
    outside. Differentiable in x (and in matrix)."""
    h, w = x.shape[0], x.shape[1]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    rows = (jnp.arange(h, dtype=jnp.float32) - cy)[:, None]
    cols = (jnp.arange(w, dtype=jnp.float32) - cx)[None, :]
    inverse = jnp.linalg.inv(matrix)
    src_x = _reflect(inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2] + cx, w)
    src_y = _reflect(inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2] + cy, h)
    x0, y0 = jnp.floor(src_x), jnp.floor(src_y)
    wx, wy = (src_x - x0)[..., None].astype(x.dtype), (src_y - y0)[..., None].astype(x.dtype)
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
    top = x[y0, x0] * (1 - wx) + x[y0, x1] * wx
    bottom = x[y1, x0] * (1 - wx) + x[y1, x1] * wx
    return top * (1 - wy) + bottom * wy


def ada_color_matrix(params: dict, gate: dict, channels: int) -> jax.Array:
    """The 'ada_color' map as a float32 [C + 1, C + 1] affine matrix on (x_1, ..., x_C, 1), brightness
    applied first; transforms whose gate is false are left out."""
    eye = jnp.eye(channels + 1)
    v = jnp.full((channels,), 1 / jnp.sqrt(channels))
    vv = jnp.zeros((channels + 1, channels + 1)).at[:channels, :channels].set(jnp.outer(v, v))
    chroma = eye.at[channels, channels].set(0.0) - vv  # projection off the luma axis (on the C channels)
    if channels == 3:  # Rodrigues: rotation about v by the hue angle
        c, s = jnp.cos(params["hue"]), jnp.sin(params["hue"])
        cross = jnp.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
        hue = eye.at[:3, :3].set(c * jnp.eye(3) + s * cross + (1 - c) * jnp.outer(v, v))
    else:
        hue = eye
    steps = (
        ("ada_brightness", eye.at[:channels, channels].set(params["ada_brightness"])),
        ("ada_contrast", eye.at[:channels, :channels].multiply(params["ada_contrast"])),
        ("lumaflip", jnp.where(params["lumaflip"], eye - 2 * vv, eye)),
        ("hue", hue),
        ("ada_saturation", eye - chroma + chroma * params["ada_saturation"]),
    )
    matrix = eye
    for name, step in steps:
        matrix = jnp.where(gate[name], step @ matrix, matrix)
    return matrix


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
    if "geometric" in ops:
        on = jnp.any(jnp.stack([gate[name] for name in GEOMETRIC_GATES]))
        x = jnp.where(on, resample(x, geometric_matrix(params, gate)), x)
    if "ada_color" in ops:
        on = jnp.any(jnp.stack([gate[name] for name in ADA_COLOR_GATES]))
        matrix = ada_color_matrix(params, gate, x.shape[-1]).astype(x.dtype)
        x = jnp.where(on, x @ matrix[:-1, :-1].T + matrix[:-1, -1], x)
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
