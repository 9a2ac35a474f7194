"""Feature networks on uint8 image batches: one protocol's preprocessing, then the network, on all local devices.

    inception = InceptionFeatureExtractor.from_weights_file(path, protocol="clean")
    taps = inception(images)      # {'features_2048': [N, 2048], 'logits': [N, 1008], ...}
    vgg16 = VGG16FeatureExtractor.from_weights_file(path)
    vgg16(images)["fc2_relu"]      # [N, 4096]

Batches are uint8 [B, H, W, 3] (or 1-channel) arrays, or sequences of uint8 [H_i, W_i, 3] images of
different sizes. Preprocessing (`protocols.Protocol.preprocess`) is jitted once per input shape; the
network once per (padded) batch size, on the protocol's fixed input size. Images of different sizes
are preprocessed in groups of one size and joined on the host (an extra copy of the network input).
Convolutions use float32 at Precision.HIGHEST (no TF32): metrics must not depend on the accelerator's
default matmul precision.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from pggan import parallel
from pggan.metrics.device_batches import as_rgb_uint8, data_mesh, replicated_sharding, shard_batch
from pggan.metrics.inception_weights import INCEPTION_WEIGHTS, inception_state
from pggan.metrics.protocols import DEFAULT_PROTOCOL, VGG16_PROTOCOL, Protocol, inception_protocol
from pggan.metrics.vgg16_weights import VGG16_WEIGHTS, vgg16_state
from pggan.metrics.weights_files import load_params

Images = np.ndarray | Sequence[np.ndarray]


def _preprocess(protocol: Protocol, images: jax.Array) -> jax.Array:
    return protocol.preprocess(images)


def _network(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array) -> dict[str, jax.Array]:
    return nnx.merge(graphdef, state)(x)


class FeatureExtractor:
    """A network (returning a dict of float32 [N, D] arrays) behind a preprocessing protocol."""

    def __init__(self, graphdef: nnx.GraphDef, state: nnx.State, protocol: Protocol, what: str):
        self._graphdef = graphdef
        self._state = jax.device_put(state, replicated_sharding())
        self.protocol = protocol
        self._what = what
        platform = data_mesh().devices.flat[0].platform
        self._run_preprocess = parallel.jit_for(platform, _preprocess, static_argnums=0)
        self._run_network = parallel.jit_for(platform, _network, static_argnums=0)

    def _network_input(self, images: Images) -> tuple[jax.Array, int]:
        """Preprocessed float32 [M, S, S, 3] sharded over the devices, and the number of real rows."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            sharded, num_valid = shard_batch(as_rgb_uint8(images, self._what))
            return self._run_preprocess(self.protocol, sharded), num_valid
        images = [as_rgb_uint8(np.asarray(image)[None], self._what)[0] for image in images]
        groups: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape, []).append(i)
        parts, order = [], []
        for positions in groups.values():
            sharded, num_valid = shard_batch(np.stack([images[i] for i in positions]))
            parts.append(np.asarray(self._run_preprocess(self.protocol, sharded))[:num_valid])
            order += positions
        return shard_batch(np.concatenate(parts)[np.argsort(order)])

    def __call__(self, images: Images) -> dict[str, np.ndarray]:
        """images: uint8 [B, H, W, 3] or [B, H, W, 1], or a sequence of [H_i, W_i, 3]; any sizes.

        Returns the network's outputs as float32 host arrays [B, D] (see the subclasses).
        """
        x, num_valid = self._network_input(images)
        outputs = self._run_network(self._graphdef, self._state, x)
        return {name: np.asarray(value[:num_valid]) for name, value in outputs.items()}


class InceptionFeatureExtractor(FeatureExtractor):
    """The FID Inception: features_64 [B, 64], features_192 [B, 192], features_768 [B, 768],
    features_2048 [B, 2048] (pool_3) and logits [B, 1008] (bias-free), after `protocol`."""

    def __init__(self, params: dict[str, np.ndarray], protocol: str = DEFAULT_PROTOCOL):
        """params: flat float32 parameters (`inception_weights.convert_state_dict`); protocol: a name
        of `protocols.PROTOCOLS`."""
        super().__init__(*inception_state(params), inception_protocol(protocol), "Inception images")

    @classmethod
    def from_weights_file(
        cls,
        path: str | os.PathLike | None = None,
        cache: str | os.PathLike | None = None,
        protocol: str = DEFAULT_PROTOCOL,
    ) -> InceptionFeatureExtractor:
        """Loads pt_inception-2015-12-05-6726825d.pth (explicit path or $PGGAN_INCEPTION_WEIGHTS)."""
        return cls(load_params(INCEPTION_WEIGHTS, path, cache), protocol)


class VGG16FeatureExtractor(FeatureExtractor):
    """torchvision's VGG16 after `protocols.VGG16_PROTOCOL`: {'fc2_relu': float32 [B, 4096] >= 0}."""

    def __init__(self, params: dict[str, np.ndarray]):
        """params: flat float32 parameters (`vgg16_weights.convert_state_dict`)."""
        super().__init__(*vgg16_state(params), VGG16_PROTOCOL, "VGG16 images")

    @classmethod
    def from_weights_file(
        cls, path: str | os.PathLike | None = None, cache: str | os.PathLike | None = None
    ) -> VGG16FeatureExtractor:
        """Loads vgg16-397923af.pth (explicit path or $PGGAN_VGG16_WEIGHTS)."""
        return cls(load_params(VGG16_WEIGHTS, path, cache))
