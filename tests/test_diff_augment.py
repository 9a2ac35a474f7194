"""Differentiable augmentation: p = 0 is the identity, each op matches its definition computed in NumPy
(the resampled geometric transforms against scipy.ndimage), the parameters drawn at p = 1 have the stated
distributions, the ADA colour transforms have their defining properties, and adaptive p moves as ADA's
rule says."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from pggan.data import diff_augment
from pggan.data.diff_augment import AugmentConfig

SIZE = 8


def _draws(count, p, size=SIZE, seed=0):
    keys = jax.random.split(jax.random.key(seed), count)
    return jax.vmap(lambda k: diff_augment.draw(k, jnp.float32(p), size))(keys)


def _images(count, seed=1, size=SIZE):
    return np.random.default_rng(seed).uniform(-1, 1, (count, size, size, 3)).astype(np.float32)


def _numpy_augment(x, params, ops):
    """The definitions of the module docstring, one image at a time, in float64."""
    gates = dict(zip(diff_augment.GATES, np.asarray(params["gates"])))
    x = x.astype(np.float64)
    size = x.shape[0]
    if "xflip" in ops and gates["xflip"] and params["flip"]:
        x = x[:, ::-1]
    if "rotate90" in ops and gates["rotate90"]:
        x = np.rot90(x, int(params["rotation"]), axes=(0, 1))
    if "color" in ops:
        if gates["brightness"]:
            x = x + float(params["brightness"])
        if gates["saturation"]:
            m = x.mean(axis=-1, keepdims=True)
            x = (x - m) * float(params["saturation"]) + m
        if gates["contrast"]:
            x = (x - x.mean()) * float(params["contrast"]) + x.mean()
    if "translation" in ops and gates["translation"]:
        dy, dx = (int(v) for v in params["shift"])
        out = np.zeros_like(x)
        for i in range(size):
            for j in range(size):
                if 0 <= i - dy < size and 0 <= j - dx < size:
                    out[i, j] = x[i - dy, j - dx]
        x = out
    if "geometric" in ops:
        x = _numpy_geometric(x, params, gates)
    if "ada_color" in ops:
        x = _numpy_ada_color(x, params, gates)
    if "cutout" in ops and gates["cutout"]:
        top, left = (int(v) for v in params["cutout"])
        side = diff_augment.cutout_size(size)
        x = x.copy()
        x[max(top, 0) : max(top + side, 0), max(left, 0) : max(left + side, 0)] = 0.0
    return x


def _numpy_geometric(x, params, gates):
    """Forward map M = T R' A R S (x right, y down, pixels about the centre; the gated ones), then
    scipy.ndimage.affine_transform of each channel: bilinear (order 1), 'mirror' = reflect-101."""
    theta, theta_post = (float(a) for a in params["angles"])

    def rotation(angle):
        return np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])

    s, a = float(params["scale"]), float(params["aniso"])
    ty, tx = (float(t) for t in params["xfrac"])
    forward = np.eye(3)
    for name, step in (
        ("scale", np.diag([s, s, 1.0])),
        ("rotate", rotation(theta)),
        ("aniso", np.diag([a, 1 / a, 1.0])),
        ("rotate_post", rotation(theta_post)),
        ("xfrac", np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])),
    ):
        if gates[name]:
            forward = step @ forward
    if not any(gates[name] for name in diff_augment.GEOMETRIC_GATES):
        return x
    inverse = np.linalg.inv(forward)
    swap = np.array([[0, 1], [1, 0]])  # (x, y) <-> (row, column)
    matrix = swap @ inverse[:2, :2] @ swap
    centre = (np.array(x.shape[:2]) - 1) / 2
    offset = centre - matrix @ centre + swap @ inverse[:2, 2]
    return np.stack(
        [ndimage.affine_transform(x[..., c], matrix, offset, order=1, mode="mirror") for c in range(x.shape[-1])],
        axis=-1,
    )


def _numpy_ada_color(x, params, gates):
    """ADA's colour transforms one after another on RGB pixels, the hue rotation from scipy's Rotation."""
    luma = np.ones(3) / np.sqrt(3)
    if gates["ada_brightness"]:
        x = x + float(params["ada_brightness"])
    if gates["ada_contrast"]:
        x = x * float(params["ada_contrast"])
    if gates["lumaflip"] and params["lumaflip"]:
        x = x - 2 * (x @ luma)[..., None] * luma
    if gates["hue"]:
        x = x @ Rotation.from_rotvec(luma * float(params["hue"])).as_matrix().T
    if gates["ada_saturation"]:
        grey = (x @ luma)[..., None] * luma
        x = grey + (x - grey) * float(params["ada_saturation"])
    return x


@pytest.mark.parametrize(
    "ops",
    [
        diff_augment.OPS,
        ("color",),
        ("translation",),
        ("cutout",),
        ("xflip", "rotate90"),
        ("geometric",),
        ("ada_color",),
        diff_augment.ALIASES["bgc"],
    ],
)
def test_p_zero_is_the_identity_and_p_one_matches_the_definitions(ops):
    images = _images(16)
    unchanged = diff_augment.augment(jnp.asarray(images), _draws(16, 0.0), ops)
    np.testing.assert_array_equal(np.asarray(unchanged), images)
    params = _draws(16, 1.0)
    augmented = np.asarray(diff_augment.augment(jnp.asarray(images), params, ops))
    for n in range(16):
        one = jax.tree.map(lambda v, n=n: np.asarray(v)[n], params)
        np.testing.assert_allclose(augmented[n], _numpy_augment(images[n], one, ops), atol=1e-5)
    assert np.abs(augmented - images).max() > 0.1


def test_parameters_at_p_one_have_their_distributions():
    count = 20000
    params = jax.tree.map(np.asarray, _draws(count, 1.0))
    assert params["gates"].all()
    for name, low, high in (("brightness", -0.5, 0.5), ("saturation", 0.0, 2.0), ("contrast", 0.5, 1.5)):
        values = params[name]
        assert low <= values.min() and values.max() < high
        assert values.mean() == pytest.approx((low + high) / 2, abs=0.02)
        assert values.var() == pytest.approx((high - low) ** 2 / 12, rel=0.05)
    t = diff_augment.translation_range(SIZE)  # 1 at 8x8
    for values, support in (
        (params["shift"].ravel(), range(-t, t + 1)),
        (params["rotation"], range(4)),
        (params["flip"].astype(int), range(2)),
    ):
        frequencies = np.bincount(values - min(support), minlength=len(support)) / values.size
        np.testing.assert_allclose(frequencies, 1 / len(support), atol=0.015)
    side = diff_augment.cutout_size(SIZE)  # centre uniform over 0..SIZE (even side), square from centre - side/2
    starts = params["cutout"].ravel() + side // 2
    np.testing.assert_allclose(np.bincount(starts) / starts.size, 1 / (SIZE + 1), atol=0.015)


def test_geometric_and_ada_color_parameters_at_p_one_have_their_distributions():
    count = 20000
    params = jax.tree.map(np.asarray, _draws(count, 1.0, size=16))
    for name, values, std in (
        ("scale", np.log2(params["scale"]), 0.2),
        ("aniso", np.log2(params["aniso"]), 0.2),
        ("xfrac", params["xfrac"].ravel() / 16, 0.125),  # of the image size
        ("ada_brightness", params["ada_brightness"], 0.2),
        ("ada_contrast", np.log2(params["ada_contrast"]), 0.5),
        ("ada_saturation", np.log2(params["ada_saturation"]), 1.0),
    ):
        assert values.mean() == pytest.approx(0.0, abs=0.03 * std), name
        assert values.std() == pytest.approx(std, rel=0.03), name
    for values in (params["angles"].ravel(), params["hue"]):
        assert -np.pi <= values.min() and values.max() < np.pi
        assert values.var() == pytest.approx((2 * np.pi) ** 2 / 12, rel=0.05)
    assert params["lumaflip"].mean() == pytest.approx(0.5, abs=0.015)
    # at p = 0.3 every gate is on with probability 0.3, but each rotation with 1 - sqrt(0.7): some rotation 0.3
    gates = dict(zip(diff_augment.GATES, np.asarray(_draws(count, 0.3)["gates"]).T))
    for name in diff_augment.GATES:
        expected = 1 - np.sqrt(0.7) if name in ("rotate", "rotate_post") else 0.3
        assert gates[name].mean() == pytest.approx(expected, abs=0.015), name
    assert (gates["rotate"] | gates["rotate_post"]).mean() == pytest.approx(0.3, abs=0.015)


def _only(gate_names, count=1, **values):
    """Parameters of `count` images with only the named gates on and the given parameter values."""
    params = jax.tree.map(np.asarray, _draws(count, 1.0, size=32, seed=5))
    params["gates"] = np.broadcast_to(np.isin(diff_augment.GATES, gate_names), params["gates"].shape).copy()
    for name, value in values.items():
        params[name] = np.broadcast_to(np.asarray(value, params[name].dtype), params[name].shape).copy()
    return jax.tree.map(jnp.asarray, params)


def _smooth_image(size=32):
    """A smooth RGB image in about [-1, 1]: a Gaussian blob off centre plus slow ramps."""
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    blob = np.exp(-((i - 0.35 * size) ** 2 + (j - 0.6 * size) ** 2) / (2 * (size / 6) ** 2))
    return np.stack([blob, i / size, 0.5 * blob + 0.5 * j / size], axis=-1).astype(np.float32) * 1.6 - 0.8


def test_rotation_by_a_known_angle_matches_scipy_rotate():
    image = _smooth_image()
    for degrees in (30.0, -75.0, 180.0):
        params = _only(["rotate"], angles=[np.radians(degrees), 0.0])
        rotated = np.asarray(diff_augment.augment(jnp.asarray(image[None]), params, ("geometric",)))[0]
        # scipy's positive angle turns the picture the other way round (counter-clockwise on screen)
        expected = ndimage.rotate(image.astype(np.float64), -degrees, reshape=False, order=1, mode="mirror")
        np.testing.assert_allclose(rotated, expected, atol=2e-5)
    # 180 degrees is exact: the image reversed along both axes
    np.testing.assert_allclose(rotated, image[::-1, ::-1], atol=2e-5)


def test_isotropic_scaling_and_fractional_translation_match_their_definitions():
    image = _smooth_image()
    x = jnp.asarray(image[None])
    half = np.asarray(diff_augment.augment(x, _only(["xfrac"], xfrac=[0.0, 0.5]), ("geometric",)))[0]
    # moved right by half a pixel: the mean of each pixel and its left neighbour (the first column
    # reflects: its left neighbour is column 1)
    np.testing.assert_allclose(half[:, 1:], (image[:, 1:] + image[:, :-1]) / 2, atol=1e-6)
    np.testing.assert_allclose(half[:, 0], (image[:, 0] + image[:, 1]) / 2, atol=1e-6)
    shifted = np.asarray(diff_augment.augment(x, _only(["xfrac"], xfrac=[-3.0, 2.0]), ("geometric",)))[0]
    np.testing.assert_allclose(shifted[:-3, 2:], image[3:, :-2], atol=1e-6)  # integer offsets copy pixels
    zoomed = np.asarray(diff_augment.augment(x, _only(["scale"], scale=2.0), ("geometric",)))[0]
    # scale 2 about the centre (15.5, 15.5): out(i, j) = image((i - 15.5) / 2 + 15.5, ...), bilinear
    coordinates = (np.arange(32) - 15.5) / 2 + 15.5
    expected = np.stack(
        [
            ndimage.map_coordinates(
                image[..., c].astype(np.float64), np.meshgrid(coordinates, coordinates, indexing="ij"), order=1
            )
            for c in range(3)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(zoomed, expected, atol=1e-5)


def test_ada_color_transforms_keep_their_defining_properties():
    count = 64
    images = jnp.asarray(_images(count, seed=7))
    x = np.asarray(images, np.float64)
    luma = x.mean(axis=-1, keepdims=True)  # v v.x = the channel mean on every channel

    def apply(gate_names, images=images, **values):
        return np.asarray(diff_augment.augment(images, _only(gate_names, count, **values), ("ada_color",)), np.float64)

    flipped = apply(["lumaflip"], lumaflip=True)
    np.testing.assert_allclose(flipped, x - 2 * luma, atol=1e-6)  # the luma component negated
    np.testing.assert_allclose(
        apply(["lumaflip"], images=jnp.asarray(flipped, jnp.float32), lumaflip=True), x, atol=1e-6
    )
    for hue in (0.7, -2.0):
        rotated = apply(["hue"], hue=hue)
        np.testing.assert_allclose(rotated.mean(axis=-1, keepdims=True), luma, atol=1e-6)  # keeps luma
        np.testing.assert_allclose(
            np.linalg.norm(rotated - luma, axis=-1), np.linalg.norm(x - luma, axis=-1), atol=1e-5
        )
    np.testing.assert_allclose(apply(["hue"], hue=2 * np.pi / 3), np.roll(x, 1, axis=-1), atol=1e-6)  # R->G->B->R
    np.testing.assert_allclose(apply(["ada_saturation"], ada_saturation=0.0), np.broadcast_to(luma, x.shape), atol=1e-6)
    np.testing.assert_allclose(apply(["ada_saturation"], ada_saturation=3.0), luma + 3 * (x - luma), atol=1e-5)
    np.testing.assert_allclose(apply(["ada_contrast"], ada_contrast=1.5), 1.5 * x, atol=1e-6)
    # brightness with its drawn offsets: every image's mean moves by its own b ~ N(0, 0.2^2)
    params = _draws(4000, 1.0, size=SIZE, seed=9)
    params["gates"] = jnp.asarray(
        np.broadcast_to(np.array(diff_augment.GATES) == "ada_brightness", params["gates"].shape)
    )
    zeros = jnp.zeros((4000, SIZE, SIZE, 3))
    moved = np.asarray(diff_augment.augment(zeros, params, ("ada_color",))).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(moved, np.asarray(params["ada_brightness"]), atol=1e-6)
    assert moved.std() == pytest.approx(0.2, rel=0.05)


def test_augmented_image_statistics_match_the_definitions():
    """On a constant image: brightness moves each image's mean by U(-0.5, 0.5); cutout zeroes the expected area."""
    count = 4000
    params = _draws(count, 1.0, seed=3)
    ones = jnp.ones((count, SIZE, SIZE, 3))
    shift = np.asarray(diff_augment.augment(ones * 0.0, params, ("color",))).mean(axis=(1, 2, 3))
    # brightness b, then saturation and contrast keep a constant image constant
    np.testing.assert_allclose(shift, np.asarray(params["brightness"]), atol=1e-6)
    cut = 1.0 - np.asarray(diff_augment.augment(ones, params, ("cutout",))).mean(axis=(1, 2, 3))
    side = diff_augment.cutout_size(SIZE)
    covered = [len(range(max(s - side // 2, 0), min(s - side // 2 + side, SIZE))) for s in range(SIZE + 1)]
    assert cut.mean() == pytest.approx(np.mean(covered) ** 2 / SIZE**2, rel=0.05)


def test_gradients_pass_through_every_op():
    images = jnp.asarray(_images(4))
    params = _draws(4, 1.0)
    grads = jax.grad(lambda x: jnp.sum(diff_augment.augment(x, params, diff_augment.OPS) ** 2))(images)
    assert np.isfinite(np.asarray(grads)).all() and np.abs(np.asarray(grads)).max() > 0
    # translation alone: the gradient of sum(out) is 1 where a pixel stays inside the image
    grads = np.asarray(jax.grad(lambda x: jnp.sum(diff_augment.augment(x, params, ("translation",))))(images))
    for n in range(4):
        dy, dx = (int(v) for v in params["shift"][n])
        expected = np.zeros((SIZE, SIZE, 3))
        expected[max(-dy, 0) : SIZE - max(dy, 0), max(-dx, 0) : SIZE - max(dx, 0)] = 1.0
        np.testing.assert_array_equal(grads[n], expected)


def test_adaptive_p_follows_the_sign_of_r_minus_target():
    config = AugmentConfig(policy="ada", probability=0.0, target=0.6, speed_kimg=0.32, interval=2)
    state, history = config.initial_state(), []
    # step size interval * minibatch / (1000 * speed_kimg) = 2 * 16 / 320 = 0.1
    for real_sign in (1.0, 0.5, 1.0, 1.0, 0.0, 0.2, -1.0, 0.0, -1.0, -1.0):
        state = config.update_state(state, jnp.float32(real_sign), minibatch=16)
        history.append(float(state["p"]))
    # r over pairs: 0.75 (up), 1.0 (up), 0.1 (down), -0.5 (down), -1 (down, clipped at 0)
    np.testing.assert_allclose(history, [0, 0.1, 0.1, 0.2, 0.2, 0.1, 0.1, 0.0, 0.0, 0.0], atol=1e-6)
    assert int(state["steps"]) == 0 and float(state["sign_sum"]) == 0.0


def test_config_names_ops_and_checks_in_one_line():
    assert AugmentConfig(policy="diffaugment").ops == ("color", "translation", "cutout")
    assert AugmentConfig(policy="cutout, xflip").policy == "xflip,cutout"
    assert AugmentConfig(policy="bgc").ops == ("xflip", "rotate90", "translation", "geometric", "ada_color")
    assert AugmentConfig().ops == () and not AugmentConfig(policy="ada").adaptive
    for fields, message in (
        ({"policy": "blur"}, "config.augment.policy must be"),
        ({"policy": "color,color"}, "config.augment.policy must be"),
        ({"probability": 1.5}, "config.augment.probability must be in [0, 1]"),
        ({"target": 0.6}, "config.augment.target > 0 needs a config.augment.policy"),
        ({"policy": "ada", "interval": 0}, "config.augment.interval must be an integer >= 1"),
    ):
        with pytest.raises(ValueError) as raised:
            AugmentConfig(**fields)
        assert message in str(raised.value) and "\n" not in str(raised.value)
