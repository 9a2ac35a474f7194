"""Does bfloat16 compute hurt quality? Final SWD of the same recipe trained in float32 and bfloat16; and the
real-vs-real floor of that measure, against which every final SWD is read.

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
from pggan.training.config import TrainingConfig

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
    return _swd_of(fakes, reals)


def _swd_of(fakes: np.ndarray, reals: np.ndarray) -> dict[str, float]:
    suite = MetricSuite(names=("swd",))
    return suite.evaluate(_batches(fakes), suite.real_statistics(_batches(reals)))


def real_floor(config: ml_collections.ConfigDict, seeds: list[int]) -> dict:
    """SWD of real images against real images at the recipe's final resolution: what `final_swd` gives at best.

    Per seed, two measures:
      'halves': a random half of the images (in the fakes' place) against the other half (SWD compares
        equally many images: one image is left out of an odd count);
      'resampled': as many images as the dataset has, drawn with replacement, against all of them (the
        counts of `final_swd`, the images a perfect generator could produce).
    Returns {'num_reals': int, 'runs': [{'kind', 'seed', 'swd_avg', levels...}], 'summary': {kind: {'mean',
    'std', 'min', 'max'}}} with SWD values x1e3 as `final_swd` gives them.
    """
    model = TrainingConfig.parse(config).model
    dataset = data_config.open_from_config(
        config.dataset, resolution=model.resolution, channels=model.num_channels, label_size=model.label_size
    )
    reals, _ = dataset.read_level(model.resolution)
    runs = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(reals))
        half = len(reals) // 2
        runs.append({"kind": "halves", "seed": seed, **_swd_of(reals[order[:half]], reals[order[half : 2 * half]])})
        drawn = rng.integers(0, len(reals), size=len(reals))
        runs.append({"kind": "resampled", "seed": seed, **_swd_of(reals[drawn], reals)})
    return {"num_reals": len(reals), "runs": runs, "summary": _summary(runs, "kind", ("halves", "resampled"))}


def _summary(runs: list[dict], key: str, values: tuple[str, ...]) -> dict:
    """{value: mean, std (ddof 1; 0 for one run), min, max of 'swd_avg' over the runs with run[key] == value}."""
    summary = {}
    for value in values:
        scores = np.array([r["swd_avg"] for r in runs if r[key] == value])
        summary[value] = {
            "mean": float(scores.mean()),
            "std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            "min": float(scores.min()),
            "max": float(scores.max()),
        }
    return summary


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
    summary = _summary(runs, "dtype", dtypes)
    result = {"runs": runs, "summary": summary}
    if {"float32", "bfloat16"} <= set(dtypes):
        f32, bf16 = summary["float32"], summary["bfloat16"]
        result["bf16_passes"] = bool(bf16["mean"] <= f32["max"])
    return result
