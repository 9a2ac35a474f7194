"""Throughput of the generator as pggan-generate, the explorer and in-training metrics run it.

Speed does not depend on the weights, so G gets freshly drawn parameters of the model's shapes: no
checkpoint is needed. Latents go in from the host, uint8 images come back to it
(`generation.generate_images`, batch-sharded over the local devices).
"""

from __future__ import annotations

import time

import numpy as np

from pggan.model.networks import ModelSpec, build_networks
from pggan.sampling import generation


def measure_generation(spec: ModelSpec, resolution: int, batch_size: int, batches: int = 5, seed: int = 0) -> dict:
    """Images/s of G at `resolution` (fully faded in) for host latent batches of `batch_size`.

    Returns {'resolution', 'batch_size', 'compile_s' (first batch), 'img_per_s' (the next `batches`)}.
    """
    generator, _ = build_networks(spec, seed)
    latents = np.random.default_rng(seed).standard_normal((batch_size * batches, spec.latent_size), np.float32)
    labels = (
        np.eye(spec.label_size, dtype=np.float32)[np.arange(batch_size * batches) % spec.label_size]
        if spec.label_size
        else None
    )

    def run(count: int) -> float:
        start = time.perf_counter()
        generation.generate_images(
            generator,
            latents[:count],
            None if labels is None else labels[:count],
            resolution=resolution,
            batch_size=batch_size,
        )
        return time.perf_counter() - start

    compile_s = run(batch_size)
    seconds = run(batch_size * batches)
    return {
        "resolution": resolution,
        "batch_size": batch_size,
        "compile_s": compile_s,
        "img_per_s": batch_size * batches / seconds,
    }
