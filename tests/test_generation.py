"""Batched, device-sharded generation with a tiny real Generator: determinism, truncation,
keyframes and a random-walk grid video written to disk."""

import jax
import numpy as np
import pytest
from flax import nnx

from pggan import parallel
from pggan.model import networks
from pggan.sampling import generation, latent_space, media

RESOLUTION = 8


def _tiny_generator(label_size: int = 0) -> networks.Generator:
    """A real 8x8 generator whose biases are random too (at init they are zero, so G(0) would be flat)."""
    spec = networks.ModelSpec(resolution=RESOLUTION, fmap_base=32, fmap_max=8, latent_size=8, label_size=label_size)
    generator, _ = networks.build_networks(spec, seed=0)
    rng = np.random.default_rng(1)
    params = nnx.state(generator, nnx.Param)
    params = jax.tree.map_with_path(
        lambda path, x: (
            rng.normal(0, 0.5, x.shape).astype(np.float32)
            if any(getattr(k, "key", None) == "bias" for k in path)
            else x
        ),
        params,
    )
    nnx.update(generator, params)
    return generator


@pytest.fixture(scope="module")
def generator():
    return _tiny_generator()


def _generate(generator, latents, labels=None, **kwargs):
    kwargs.setdefault("batch_size", 8)
    return generation.generate_images(generator, latents, labels, resolution=RESOLUTION, **kwargs)


def test_same_seed_gives_the_same_png_bytes_and_the_grid_has_the_right_size(generator, tmp_path):
    rows, cols = latent_space.parse_grid_spec("2x3")
    for name in ("a.png", "b.png"):
        images = _generate(generator, latent_space.grid_latents(5, rows * cols, 8))
        media.save_png(media.make_grid(images, rows, cols), tmp_path / name)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert media.load_png(tmp_path / "a.png").shape == (rows * RESOLUTION, cols * RESOLUTION, 3)
    other = media.make_grid(_generate(generator, latent_space.grid_latents(6, rows * cols, 8)), rows, cols)
    assert not np.array_equal(other, media.load_png(tmp_path / "a.png"))


def test_one_and_eight_devices_agree_whatever_the_batching(generator):
    assert jax.device_count() == 8
    latents = latent_space.latents_for_seeds(range(10), 8)
    eight = _generate(generator, latents, batch_size=5)  # rounded up to 8: two batches, the last padded
    one_device = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:1])
    one = _generate(generator, latents, batch_size=3, mesh=one_device)
    assert eight.shape == (10, RESOLUTION, RESOLUTION, 3) and eight.dtype == np.uint8
    assert np.abs(eight.astype(np.int16) - one).max() <= 1
    assert len({image.tobytes() for image in eight}) == 10


def test_streamed_batches_are_trimmed_to_the_latents():
    generator = _tiny_generator()
    batches = list(
        generation.generate_image_batches(
            generator, latent_space.grid_latents(0, 10, 8), resolution=RESOLUTION, batch_size=8
        )
    )
    assert [len(b) for b in batches] == [8, 2]


def test_truncation_psi_zero_gives_the_same_image_for_every_latent(generator):
    spec = generator.spec
    latents = latent_space.grid_latents(3, 8, 8) * np.linspace(0.5, 3, 8, dtype=np.float32)[:, None]
    collapsed = _generate(generator, latent_space.truncate(latents, None, 0.0, spec)[0])
    assert (collapsed == collapsed[0]).all() and collapsed[0].std() > 10
    half = _generate(generator, latent_space.truncate(latents, None, 0.5, spec)[0])
    full = _generate(generator, latent_space.truncate(latents, None, 1.0, spec)[0])
    np.testing.assert_array_equal(full, _generate(generator, latents))
    assert len({image.tobytes() for image in half}) == 8
    distance = lambda images: np.abs(images.astype(np.float32) - collapsed).mean()  # noqa: E731
    assert 0 < distance(half) < distance(full)


def test_conditional_truncation_psi_zero_gives_one_image_per_label():
    generator = _tiny_generator(label_size=3)
    labels = latent_space.one_hot_labels([0, 0, 0, 0, 2, 2, 2, 2], 3)
    latents, labels = latent_space.truncate(latent_space.grid_latents(4, 8, 8), labels, 0.0, generator.spec)
    images = _generate(generator, latents, labels)
    assert (images[:4] == images[0]).all() and (images[4:] == images[4]).all()
    assert not np.array_equal(images[0], images[4])


def test_keyframes_of_the_interpolation_are_the_images_of_their_seeds(generator):
    seeds = [10, 20, 30]
    keys = latent_space.latents_for_seeds(seeds, 8)
    path = latent_space.keyframe_path(keys, 16, loop=False)
    frames = _generate(generator, path)
    np.testing.assert_array_equal(frames[latent_space.keyframe_indices(3, 16, loop=False)], _generate(generator, keys))


@pytest.mark.parametrize("extension", [".mp4", ".gif"])
def test_random_walk_grid_video_has_duration_times_fps_frames(generator, tmp_path, extension):
    duration, fps, rows, cols, zoom = 2, 6, 2, 2, 4
    walk = latent_space.smooth_random_walk(duration * fps, 8, fps=fps, smoothing_sec=0.5, seed=1, num_walks=rows * cols)
    batches = generation.generate_image_batches(generator, walk.reshape(-1, 8), resolution=RESOLUTION, batch_size=8)
    size = (rows * RESOLUTION * zoom, cols * RESOLUTION * zoom)  # H.264's 4:2:0 chroma needs more than 8x8 pixels
    frames = (media.fit_to_frame(grid, *size) for grid in media.grids_from_batches(batches, rows, cols))
    path = tmp_path / f"walk{extension}"
    assert media.write_video(frames, path, fps=fps) == duration * fps
    info, decoded = media.read_video(path)
    assert (info.num_frames, info.height, info.width) == (duration * fps, *size)
    decoded = np.asarray(list(decoded), np.float32)
    for t in (0, duration * fps - 1):
        expected = media.fit_to_frame(media.make_grid(_generate(generator, walk[t]), rows, cols), *size)
        assert np.abs(decoded[t] - expected).mean() < 6  # frames half a loop apart differ by about 20


def test_bad_inputs_give_one_line_errors(generator):
    with pytest.raises(generation.GenerationError, match=r"latents must be \[N >= 1, 8\]"):
        _generate(generator, np.zeros((2, 5), np.float32))
    with pytest.raises(generation.GenerationError, match="unconditional"):
        _generate(generator, np.zeros((2, 8), np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(generation.GenerationError, match=r"needs labels \[2, 3\]"):
        _generate(_tiny_generator(label_size=3), np.zeros((2, 8), np.float32))
    with pytest.raises(generation.GenerationError, match="batch_size"):  # checked before any iteration
        generation.generate_image_batches(generator, np.zeros((2, 8), np.float32), resolution=8, batch_size=0)
    wrong_axis = jax.make_mesh((8,), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))
    with pytest.raises(generation.GenerationError, match="axis 'data'"):
        _generate(generator, np.zeros((2, 8), np.float32), mesh=wrong_axis)
    with pytest.raises(ValueError, match=r"power of two in \[4, 8\]"):
        generation.generate_images(generator, np.zeros((2, 8), np.float32), resolution=16, batch_size=8)


def test_cpu_generation_and_feature_networks_run_on_xlas_own_kernels(generator):
    """pggan's inference programs are compiled without YNNPACK fusions on CPUs (`parallel.compiler_options`),
    where plain jax.jit (XLA's default) uses them for the same computation."""
    from pggan.metrics import feature_extraction

    graphdef, state = nnx.split(generator)
    args = (graphdef, state, jax.numpy.zeros((8, generator.spec.latent_size)), None, jax.numpy.float32(1))
    default = jax.jit(generation._run_generator, static_argnames=("graphdef", "resolution"))
    ours = generation.generator_program("cpu")
    for program, uses_ynnpack in ((default, True), (ours, False)):
        hlo = program.lower(*args, resolution=RESOLUTION).compile().as_text()
        assert ("ynn_fusion" in hlo) == uses_ynnpack and "convolution(" in hlo
    conv = nnx.Conv(3, 16, (3, 3), rngs=nnx.Rngs(0))
    network = parallel.jit_for("cpu", feature_extraction._network, static_argnums=0)
    hlo = network.lower(*nnx.split(conv), jax.numpy.zeros((4, 32, 32, 3))).compile().as_text()
    assert "ynn_fusion" not in hlo and "convolution(" in hlo
