"""Running the FID Inception on uint8 image batches, sharded over all local devices."""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from flax import nnx

from pggan.metrics.device_batches import as_rgb_uint8, replicated_sharding, shard_batch
from pggan.metrics.inception import preprocess
from pggan.metrics.inception_weights import inception_state, load_inception_params


@functools.partial(jax.jit, static_argnums=0)
def _inception_taps(graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array
                    ) -> dict[str, jax.Array]:
    """uint8 [N, H, W, 3] -> the taps of `InceptionV3FID` (TF1 resize to 299 inside)."""
    return nnx.merge(graphdef, state)(preprocess(images))


class InceptionFeatureExtractor:
    """Inception features of uint8 images: {'features_2048': [N, 2048], 'logits': [N, 1008], ...}.

    Build it with `InceptionFeatureExtractor.from_weights_file(path)` (reads and caches the .pth;
    path None uses `$PGGAN_INCEPTION_WEIGHTS`) or from already converted parameters.
    One compile per distinct (padded) batch shape: keep batches the same size, a multiple of the
    device count. Convolutions use float32 at Precision.HIGHEST (no TF32), as metrics must not
    depend on the accelerator's default matmul precision.
    """

    def __init__(self, params: dict[str, np.ndarray]):
        """params: flat float32 parameters from `load_inception_params` / `convert_state_dict`."""
        self._graphdef, state = inception_state(params)
        self._state = jax.device_put(state, replicated_sharding())

    @classmethod
    def from_weights_file(cls, path: str | os.PathLike | None = None,
                          cache: str | os.PathLike | None = None) -> InceptionFeatureExtractor:
        """Loads pt_inception-2015-12-05-6726825d.pth (explicit path or $PGGAN_INCEPTION_WEIGHTS)."""
        return cls(load_inception_params(path, cache))

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """images: uint8 [B, H, W, 3] or [B, H, W, 1], any H and W.

        Returns float32 host arrays: features_64 [B, 64], features_192 [B, 192], features_768
        [B, 768], features_2048 [B, 2048] (pool_3) and logits [B, 1008] (bias-free).
        """
        images = as_rgb_uint8(images, "Inception images")
        sharded, num_valid = shard_batch(images)
        taps = _inception_taps(self._graphdef, self._state, sharded)
        return {name: np.asarray(value[:num_valid]) for name, value in taps.items()}
