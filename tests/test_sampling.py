"""Seeded latents, labels, truncation, slerp, keyframe paths and the smooth random walk (NumPy only)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from pggan.model import layers
from pggan.model.networks import ModelSpec
from pggan.sampling import latent_space


def test_latents_for_seeds_do_not_depend_on_the_other_seeds():
    both = latent_space.latents_for_seeds([3, 5], 16)
    assert both.shape == (2, 16) and both.dtype == np.float32
    np.testing.assert_array_equal(both[1], latent_space.latents_for_seeds([5], 16)[0])
    np.testing.assert_array_equal(both[0], latent_space.latents_for_seeds([7, 3], 16)[1])
    assert not np.allclose(both[0], both[1])


def test_grid_latents_are_a_stable_prefix_and_start_with_the_seed_latent():
    big = latent_space.grid_latents(11, 64, 8)
    assert big.shape == (64, 8) and big.dtype == np.float32
    np.testing.assert_array_equal(latent_space.grid_latents(11, 4, 8), big[:4])
    np.testing.assert_array_equal(latent_space.latents_for_seeds([11], 8)[0], big[0])
    assert abs(big.mean()) < 0.3 and abs(big.std() - 1) < 0.2  # N(0, 1) prior


@pytest.mark.parametrize("seeds", [[-1], [1.5], ["3"], [True]])
def test_bad_seeds_are_rejected(seeds):
    with pytest.raises(latent_space.SamplingError, match="non-negative integers"):
        latent_space.latents_for_seeds(seeds, 4)


def test_one_hot_labels():
    np.testing.assert_array_equal(latent_space.one_hot_labels([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(latent_space.SamplingError, match=r"\[0, 3\)"):
        latent_space.one_hot_labels([3], 3)
    with pytest.raises(latent_space.SamplingError, match="unconditional"):
        latent_space.one_hot_labels([0], 0)


# ----------------------------------------------------------------------------------------------
# Truncation, checked at the input of G's first layer with the network's own PixelNorm


def _first_layer_input(latents, labels):
    x = latents if labels is None else np.concatenate([latents, labels], axis=1)
    return np.asarray(layers.pixel_norm(jnp.asarray(x, jnp.float32)), np.float64)


def test_truncation_scales_the_normalised_latent_toward_zero():
    spec = ModelSpec(resolution=8, latent_size=16)
    z = latent_space.grid_latents(0, 5, 16) * np.array([[0.5], [1], [2], [3], [10]], np.float32)
    for psi in (0.0, 0.3, 0.999):
        truncated, labels = latent_space.truncate(z, None, psi, spec)
        assert labels is None and truncated.dtype == np.float32
        np.testing.assert_allclose(
            _first_layer_input(truncated, None), psi * _first_layer_input(z, None), rtol=1e-5, atol=1e-6
        )
    same, _ = latent_space.truncate(z, None, 1.0, spec)
    assert same is z


def test_conditional_truncation_keeps_the_label_and_collapses_latents_at_psi_0():
    spec = ModelSpec(resolution=8, latent_size=16, label_size=3)
    z = latent_space.grid_latents(1, 6, 16)
    y = latent_space.one_hot_labels([0, 0, 0, 2, 2, 2], 3)
    z0, y0 = latent_space.truncate(z, y, 0.0, spec)
    x0 = _first_layer_input(z0, y0)
    np.testing.assert_allclose(x0[:3], np.broadcast_to(x0[0], (3, 19)), atol=1e-6)
    np.testing.assert_allclose(x0[3:], np.broadcast_to(x0[3], (3, 19)), atol=1e-6)
    np.testing.assert_allclose(x0[:, :16], 0, atol=1e-6)
    assert x0[0, 16] > 1 and x0[3, 18] > 1 and not np.allclose(x0[0], x0[3])
    # psi = 0.5: the latent part is exactly halved; the label part lies between centre and sample.
    x, xh = _first_layer_input(z, y), _first_layer_input(*latent_space.truncate(z, y, 0.5, spec))
    np.testing.assert_allclose(xh[:, :16], 0.5 * x[:, :16], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xh[:, 16:], 0.5 * (x[:, 16:] + x0[:, 16:]), rtol=1e-5, atol=1e-6)


def test_truncation_without_latent_normalisation_scales_z():
    spec = ModelSpec(resolution=8, latent_size=4, normalize_latents=False)
    z = latent_space.grid_latents(2, 3, 4)
    np.testing.assert_allclose(latent_space.truncate(z, None, 0.25, spec)[0], 0.25 * z, rtol=1e-6)


@pytest.mark.parametrize("psi", [-0.1, 1.5])
def test_truncation_psi_outside_unit_interval_is_rejected(psi):
    with pytest.raises(latent_space.SamplingError, match=r"psi must be in \[0, 1\]"):
        latent_space.truncate(np.zeros((1, 4), np.float32), None, psi, ModelSpec(resolution=8, latent_size=4))


def test_truncation_rejects_wrong_shapes():
    spec = ModelSpec(resolution=8, latent_size=4, label_size=2)
    with pytest.raises(latent_space.SamplingError, match=r"labels must be \[1, 2\]"):
        latent_space.truncate(np.ones((1, 4), np.float32), None, 0.5, spec)
    with pytest.raises(latent_space.SamplingError, match="unconditional"):
        latent_space.truncate(np.ones((1, 4), np.float32), np.ones((1, 2)), 0.5, ModelSpec(resolution=8, latent_size=4))
    with pytest.raises(latent_space.SamplingError, match=r"latents must be \[N, 4\]"):
        latent_space.truncate(np.ones((1, 5), np.float32), np.ones((1, 2)), 0.5, spec)


# ----------------------------------------------------------------------------------------------
# Interpolation


def test_slerp_follows_the_great_circle_and_interpolates_the_norm():
    a, b = np.array([2.0, 0, 0]), np.array([0, 4.0, 0])
    t = np.linspace(0, 1, 7)
    out = latent_space.slerp(np.broadcast_to(a, (7, 3)), np.broadcast_to(b, (7, 3)), t)
    expected = (2 + 2 * t)[:, None] * np.stack([np.cos(t * np.pi / 2), np.sin(t * np.pi / 2), 0 * t], axis=1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    z = latent_space.latents_for_seeds([1, 2], 32)
    np.testing.assert_array_equal(latent_space.slerp(z[0], z[1], 0.0), z[0])
    np.testing.assert_array_equal(latent_space.slerp(z[0], z[1], 1.0), z[1])
    np.testing.assert_allclose(latent_space.slerp(z[0], 3 * z[0], 0.5), 2 * z[0], rtol=1e-6)  # parallel
    with pytest.raises(latent_space.SamplingError, match="opposite"):
        latent_space.slerp(a, -a, 0.5)


@pytest.mark.parametrize("loop", [True, False])
def test_keyframe_path_passes_exactly_through_the_keyframes(loop):
    keys = latent_space.latents_for_seeds([4, 8, 15, 16], 8)
    path = latent_space.keyframe_path(keys, 30, loop=loop)
    assert path.shape == (30, 8) and path.dtype == np.float32
    where = latent_space.keyframe_indices(4, 30, loop)
    np.testing.assert_array_equal(path[where], keys)
    expected = [0, 8, 15, 22] if loop else [0, 10, 19, 29]  # round(k * intervals / segments), half to even
    np.testing.assert_array_equal(where, expected)
    steps = np.linalg.norm(np.diff(path, axis=0, append=path[:1] if loop else path[-1:]), axis=1)
    assert steps.max() < 3 * np.median(steps)  # no jumps, including the loop's return to the start


def test_keyframe_path_of_a_grid_interpolates_each_cell_and_checks_frame_counts():
    keys = latent_space.latents_for_seeds(range(6), 8).reshape(3, 2, 8)
    path = latent_space.keyframe_path(keys, 9)
    assert path.shape == (9, 2, 8)
    np.testing.assert_array_equal(path[[0, 3, 6]], keys)
    np.testing.assert_allclose(path[1, 1], latent_space.slerp(keys[0, 1], keys[1, 1], 1 / 3))
    with pytest.raises(latent_space.SamplingError, match="need at least 3 frames"):
        latent_space.keyframe_path(keys, 2)
    with pytest.raises(latent_space.SamplingError, match="at least 2 keyframes"):
        latent_space.keyframe_path(keys[:1], 5, loop=False)


def test_keyframe_walk_passes_through_the_sample_grids_of_its_seeds():
    walk = latent_space.keyframe_walk([5, 1, 9], 12, 8, num_walks=4, loop=True)
    assert walk.shape == (12, 4, 8) and walk.dtype == np.float32
    for k, frame in enumerate(latent_space.keyframe_indices(3, 12, loop=True)):
        np.testing.assert_array_equal(walk[frame], latent_space.grid_latents([5, 1, 9][k], 4, 8))
    single = latent_space.keyframe_walk([5, 1], 7, 8, loop=False)
    np.testing.assert_array_equal(single[[0, -1], 0], latent_space.latents_for_seeds([5, 1], 8))
    with pytest.raises(latent_space.SamplingError, match="at least 1 keyframes"):
        latent_space.keyframe_walk([], 7, 8)


# ----------------------------------------------------------------------------------------------
# Random walk


@pytest.mark.parametrize("length, sigma", [(50, 3.0), (12, 5.0), (9, 0.0)])
def test_circular_gaussian_filter_matches_scipy_wrap_mode(length, sigma):
    # The official script's call: scipy.ndimage.gaussian_filter(latents, [sigma, 0, ...], mode='wrap').
    x = np.random.default_rng(0).standard_normal((length, 2, 3))
    expected = scipy.ndimage.gaussian_filter(x, [sigma, 0, 0], mode="wrap")
    np.testing.assert_allclose(latent_space.circular_gaussian_filter(x, sigma, axis=0), expected, atol=1e-12)
    np.testing.assert_allclose(
        latent_space.circular_gaussian_filter(x.swapaxes(0, 1), sigma, axis=1), expected.swapaxes(0, 1), atol=1e-12
    )


def test_smooth_random_walk_is_on_the_sphere_smooth_and_loops():
    fps, smoothing_sec, frames = 10, 1.0, 120
    walk = latent_space.smooth_random_walk(frames, 64, fps=fps, smoothing_sec=smoothing_sec, seed=7, num_walks=3)
    assert walk.shape == (frames, 3, 64) and walk.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(walk, axis=-1), math.sqrt(64), rtol=1e-5)
    # Unit-variance noise smoothed with sigma s frames changes by about sqrt(2) / (2 s) of its norm
    # per frame, against sqrt(2) for white noise; allow a factor 3 for the random sample.
    relative_steps = np.linalg.norm(np.diff(walk, axis=0), axis=-1) / math.sqrt(64)
    bound = 3 * math.sqrt(2) / (2 * smoothing_sec * fps)
    assert relative_steps.max() < bound
    wrap_step = np.linalg.norm(walk[0] - walk[-1], axis=-1) / math.sqrt(64)
    assert wrap_step.max() < bound
    far = np.linalg.norm(walk[0] - walk[frames // 2], axis=-1) / math.sqrt(64)
    assert far.min() > bound  # it does move


def test_smooth_random_walk_is_deterministic_and_walks_are_independent_of_their_count():
    one = latent_space.smooth_random_walk(20, 8, fps=5, smoothing_sec=0.5, seed=3)
    four = latent_space.smooth_random_walk(20, 8, fps=5, smoothing_sec=0.5, seed=3, num_walks=4)
    np.testing.assert_array_equal(one[:, 0], four[:, 0])
    np.testing.assert_array_equal(
        four, latent_space.smooth_random_walk(20, 8, fps=5, smoothing_sec=0.5, seed=3, num_walks=4)
    )
    assert not np.allclose(four[:, 0], four[:, 1])
    with pytest.raises(latent_space.SamplingError, match="fps must be positive"):
        latent_space.smooth_random_walk(20, 8, fps=0, smoothing_sec=1, seed=3)


@pytest.mark.parametrize(
    "resolution, rows_cols",
    [(4, (32, 32)), (32, (32, 32)), (64, (16, 30)), (128, (8, 15)), (256, (4, 7)), (512, (2, 3)), (1024, (2, 3))],
)
def test_snapshot_grid_size_matches_the_official_1080p_layout(resolution, rows_cols):
    assert latent_space.snapshot_grid_size(resolution) == rows_cols


def test_parse_grid_spec():
    assert latent_space.parse_grid_spec("8x8") == (8, 8)
    assert latent_space.parse_grid_spec("2X3") == (2, 3)
    for bad in ("8", "0x3", "axb", "3x-1", "", "2x3x4"):
        with pytest.raises(latent_space.SamplingError, match="ROWSxCOLS"):
            latent_space.parse_grid_spec(bad)
