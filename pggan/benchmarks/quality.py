"""Does bfloat16 compute hurt quality? Final SWD of the same recipe trained in float32 and bfloat16.

Each (compute dtype, seed) run trains the recipe from scratch in its own workdir (in this process,
so the compiled rounds of one dtype are shared between seeds where the step allows it), then scores
the EMA generator's images of the last checkpoint against the dataset's images at the final
resolution with SWD (as many fakes as reals). bfloat16 passes when its mean final SWD is no worse
than the worst float32 run, i.e. lies within (or below) the float32 run-to-run spread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import ml_collections
import numpy as np

from pggan.data import config as data_config
from pggan.metrics import MetricSuite
from pggan.sampling import latent_space
from pggan.sampling.generation import Sampler
from pggan.training import loop

BATCH = 256


def _batches(images: np.ndarray):
    return (images[i : i + BATCH] for i in range(0, len(images), BATCH))


def final_swd(config: ml_collections.ConfigDict, workdir: str, sample_seed: int = 123) -> dict[str, float]:
    """SWD scores (1e3 x SWD per level and 'swd_avg') of a finished run's EMA generator vs its data.

    Fakes: one per real image of the final resolution, from latents of `sample_seed`.
    """
    sampler, meta = Sampler.from_checkpoint(workdir)
    spec = sampler.spec
    dataset = data_config.open_from_config(
        config.dataset, resolution=spec.resolution, channels=spec.num_channels, label_size=spec.label_size
    )
    reals, _ = dataset.read_level(meta["resolution"])
    fakes = sampler.images(latent_space.grid_latents(sample_seed, len(reals), spec.latent_size))
    suite = MetricSuite(names=("swd",))
    return suite.evaluate(_batches(fakes), suite.real_statistics(_batches(reals)))


def compare_dtypes(
    config: ml_collections.ConfigDict,
    workdir_root: str,
    seeds: list[int],
    dtypes: tuple[str, ...] = ("float32", "bfloat16"),
    report: Callable[[dict], None] = lambda row: None,
) -> dict:
    """Trains `config` once per (dtype, seed) under workdir_root and scores each run's final SWD.

    An existing finished run in its workdir is reused (training resumes and stops at once).
    report(row) is called after each run. Returns {'runs': [{'dtype', 'seed', 'swd_avg', 'seconds',
    ...levels}], 'summary': {dtype: {'mean', 'std', 'min', 'max'}}, 'bf16_passes': bool (when both
    dtypes ran)}.
    """
    runs = []
    for dtype in dtypes:
        for seed in seeds:
            run_config = ml_collections.ConfigDict(config.to_dict())
            run_config.model.compute_dtype = dtype
            run_config.seed = seed
            workdir = os.path.join(workdir_root, f"{dtype}_seed{seed}")
            start = time.perf_counter()
            loop.train_and_evaluate(run_config, workdir)
            row = {
                "dtype": dtype,
                "seed": seed,
                "seconds": time.perf_counter() - start,
                **final_swd(run_config, workdir),
            }
            runs.append(row)
            report(row)
    summary = {}
    for dtype in dtypes:
        values = np.array([r["swd_avg"] for r in runs if r["dtype"] == dtype])
        summary[dtype] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
        }
    result = {"runs": runs, "summary": summary}
    if {"float32", "bfloat16"} <= set(dtypes):
        f32, bf16 = summary["float32"], summary["bfloat16"]
        result["bf16_passes"] = bool(bf16["mean"] <= f32["max"])
    return result
