"""Official PGGAN pickles -> pggan networks: outputs equal an independent NumPy run of the official nets.

Snapshots are written by the tests in the exact official format (tests/official_format.py) with random
weights; tests/official_numpy.py computes the official G_paper/D_paper on the official layout.
"""

import math

import jax
import numpy as np
import pytest

from pggan.model import networks
from pggan.official import convert, snapshot
from tests import official_format as fmt
from tests import official_numpy as ref

N = 8  # batch: two minibatch-stddev groups of 4 (one group of 8 where the group size is 16)

CASES = {
    # official TF defaults (fused_scale=True): fused upsampling conv in G, conv -> pool -> act in D
    "fused_16": (
        dict(num_channels=3, resolution=16, label_size=0, fmap_base=64, fmap_max=16, latent_size=8),
        dict(num_channels=3, resolution=16, label_size=0, fmap_base=64, fmap_max=16),
        [0.0, 0.3, 1.0, 1.6, 2.0],
    ),
    # as the released paper networks (converted from Theano): fused_scale=False, group size 16,
    # latent size from the default nf(0)
    "separate_32": (
        dict(num_channels=3, resolution=32, label_size=0, fmap_base=128, fmap_max=16, fused_scale=False),
        dict(
            num_channels=3,
            resolution=32,
            label_size=0,
            fmap_base=128,
            fmap_max=16,
            fused_scale=False,
            mbstd_group_size=16,
        ),
        [0.0, 0.5, 2.25],
    ),
    # conditional (AC-GAN outputs), grayscale
    "conditional_8": (
        dict(num_channels=1, resolution=8, label_size=3, fmap_base=32, fmap_max=16, latent_size=6),
        dict(num_channels=1, resolution=8, label_size=3, fmap_base=32, fmap_max=16),
        [0.0, 0.4],
    ),
}


def _fade(resolution, lod):
    """The active resolution and alpha of an official lod (written out here, not taken from pggan)."""
    whole = math.floor(lod)
    return resolution // 2**whole, 1.0 - (lod - whole), 2**whole


def _inputs(spec, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((N, spec.latent_size)).astype(np.float32)
    labels = (
        np.eye(spec.label_size, dtype=np.float32)[rng.integers(0, spec.label_size, N)]
        if spec.label_size
        else np.zeros((N, 0), np.float32)
    )
    images = rng.standard_normal((N, spec.num_channels, spec.resolution, spec.resolution))
    return z, labels, images


@pytest.fixture(scope="module", params=sorted(CASES))
def imported(request, tmp_path_factory):
    static_g, static_d, lods = CASES[request.param]
    path = tmp_path_factory.mktemp("official") / "network-snapshot-000120.pkl"
    (g, d, gs), (g_kw, d_kw) = fmt.write_snapshot(path, static_g, static_d, seed=len(request.param))
    loaded = snapshot.load_snapshot(str(path))
    spec = snapshot.model_spec(loaded)
    modules = {
        "G": networks.merge_parameters(
            networks.abstract_generator(spec), convert.generator_parameters(loaded.generator, spec)
        ),
        "Gs": networks.merge_parameters(
            networks.abstract_generator(spec), convert.generator_parameters(loaded.generator_ema, spec)
        ),
        "D": networks.merge_parameters(
            networks.abstract_discriminator(spec), convert.discriminator_parameters(loaded.discriminator, spec)
        ),
    }
    return dict(
        name=request.param,
        spec=spec,
        modules=modules,
        official={"G": g, "Gs": gs, "D": d},
        g_kw=g_kw,
        d_kw=d_kw,
        lods=lods,
    )


def test_settings_become_the_matching_model_spec(imported):
    spec, g_kw, d_kw = imported["spec"], imported["g_kw"], imported["d_kw"]
    assert (spec.resolution, spec.num_channels, spec.label_size) == (
        g_kw["resolution"],
        g_kw["num_channels"],
        g_kw["label_size"],
    )
    assert (spec.fmap_base, spec.fmap_max, spec.mbstd_group_size) == (
        g_kw["fmap_base"],
        g_kw["fmap_max"],
        d_kw["mbstd_group_size"],
    )
    assert spec.latent_size == (g_kw["latent_size"] or min(g_kw["fmap_base"], g_kw["fmap_max"]))
    assert spec.d_downsample_order == ("conv_pool_act" if d_kw["fused_scale"] else "conv_act_pool")


def test_generators_equal_the_official_computation(imported):
    spec = imported["spec"]
    z, labels, _ = _inputs(spec, 1)
    for lod in imported["lods"]:
        resolution, alpha, upscale = _fade(spec.resolution, lod)
        for role in ("G", "Gs"):
            want = ref.g_paper(imported["official"][role].vars, imported["g_kw"], z, labels, lod)
            got = imported["modules"][role](z, labels if spec.label_size else None, resolution=resolution, alpha=alpha)
            got = np.asarray(got).transpose(0, 3, 1, 2).repeat(upscale, axis=2).repeat(upscale, axis=3)
            assert got.shape == want.shape
            np.testing.assert_allclose(
                got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=f"{imported['name']} {role} lod={lod}"
            )


def test_discriminator_equals_the_official_computation(imported):
    spec = imported["spec"]
    _, _, images = _inputs(spec, 2)
    for lod in imported["lods"]:
        resolution, alpha, factor = _fade(spec.resolution, lod)
        scores, label_logits = ref.d_paper(imported["official"]["D"].vars, imported["d_kw"], images, lod)
        # pggan's D reads the images at the active resolution: the official box-downscaled input.
        small = images.reshape(N, spec.num_channels, resolution, factor, resolution, factor).mean(axis=(3, 5))
        got = np.asarray(
            imported["modules"]["D"](small.transpose(0, 2, 3, 1).astype(np.float32), resolution=resolution, alpha=alpha)
        )
        want = np.concatenate([scores, label_logits], axis=1)
        assert got.shape == (N, 1 + spec.label_size)
        np.testing.assert_allclose(
            got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=f"{imported['name']} D lod={lod}"
        )


def test_reference_fused_layers_follow_the_tensorflow_definitions():
    """Pins the reference's fused layers to TF's definitions, computed here with JAX as the oracle:
    conv2d_transpose is the gradient (VJP) of the stride-2 'SAME' convolution, and the fused downscale is a
    stride-2 'SAME' convolution; both with the official padded-and-summed 4x4 kernel."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 4))
    w_up = rng.standard_normal((3, 3, 5, 3))  # [k, k, out, in]
    w4 = ref._pad_and_sum_taps(w_up)
    conv = lambda y, k: jax.lax.conv_general_dilated(  # noqa: E731
        y, k, (2, 2), "SAME", dimension_numbers=("NCHW", "HWIO", "NCHW")
    )
    out_shape = jax.ShapeDtypeStruct((2, 5, 8, 8), np.float32)
    _, vjp = jax.vjp(lambda y: conv(y, w4.astype(np.float32)), np.zeros(out_shape.shape, np.float32))
    (transposed,) = vjp(x.astype(np.float32))
    np.testing.assert_allclose(ref.upscale2d_conv2d(x, w_up), transposed, rtol=1e-5, atol=1e-5)

    w_down = rng.standard_normal((3, 3, 3, 4))  # HWIO
    strided = conv(x.astype(np.float32), (ref._pad_and_sum_taps(w_down) * 0.25).astype(np.float32))
    np.testing.assert_allclose(ref.conv2d_downscale2d(x, w_down), strided, rtol=1e-5, atol=1e-5)
