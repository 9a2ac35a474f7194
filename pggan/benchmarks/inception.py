"""Throughput of the FID Inception feature extractor (FID, KID, IS, precision/recall evaluations).

Speed does not depend on the weights, so the network gets seeded random parameters of the right
shapes: no weights file is needed. Images go in as the metrics pass them: host uint8 batches at the
training resolution, resized to 299x299 on the devices, features back on the host.
"""

from __future__ import annotations

import time

import numpy as np
from flax import nnx

from pggan.metrics.feature_extraction import InceptionFeatureExtractor
from pggan.metrics.inception_weights import abstract_inception


def random_extractor(seed: int = 0) -> InceptionFeatureExtractor:
    """An InceptionFeatureExtractor with random parameters (float32; BatchNorm variances 1)."""
    rng = np.random.default_rng(seed)
    params = {}
    for path, variable in nnx.to_flat_state(abstract_inception()[1]):
        name = "/".join(map(str, path))
        if name.endswith("var"):
            value = np.ones(variable.shape, np.float32)
        else:
            value = rng.normal(0.0, 0.05, variable.shape).astype(np.float32)
        params[name] = value
    return InceptionFeatureExtractor(params)


def measure_inception(resolution: int, batch_size: int, batches: int = 5, seed: int = 0) -> dict:
    """Images/s of Inception features for uint8 [batch_size, resolution, resolution, 3] host batches.

    Returns {'resolution', 'batch_size', 'compile_s' (first batch), 'img_per_s' (after it)}.
    """
    extractor = random_extractor(seed)
    images = np.random.default_rng(seed).integers(0, 256, (batch_size, resolution, resolution, 3), dtype=np.uint8)
    start = time.perf_counter()
    extractor(images)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        extractor(images)
    return {
        "resolution": resolution,
        "batch_size": batch_size,
        "compile_s": compile_s,
        "img_per_s": batches * batch_size / (time.perf_counter() - start),
    }
