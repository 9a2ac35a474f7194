"""Trains named training setups (loss, penalties, D normalization, modes) for the same budget and scores them by SWD.

    python tools/compare_losses.py --outdir=runs/loss_comparison --num_images=256
    python tools/compare_losses.py --outdir=runs/lc --combinations=all --seeds=0
    python tools/compare_losses.py --outdir=runs/lc --combinations=wgan_gp,hinge_sn --config.schedule.total_kimg=20
    python tools/compare_losses.py --outdir=runs/stability --combinations=stability --num_images=256
    python tools/compare_losses.py --outdir=runs/few --combinations=logistic_r1,logistic_r1+bgc \
        --max_images=100,500 --num_images=1000

Each (combination, seed) trains in OUTDIR/<combination>/seed<k> with --config (default
configs/loss_comparison.py, the quickstart digits up to 16x16) plus the combination's loss,
penalties, D normalization and modes (`pggan.training.landscape`, e.g. wgan_gp, logistic_r1, hinge_sn,
wgan_clip, mmd_gp, logistic_r1+ada; by default the ten of landscape.COMPARED, 'stability' for
landscape.STABILITY, 'all' for landscape.COMBINATIONS; seeds 0, 1, 2). With --max_images=N,...
each also trains on only the first N images of the dataset (OUTDIR/<combination>/images<N>/seed<k>),
the small-data protocol. Its EMA generator is then scored: 1e3 x SWD (averaged over the pyramid
levels) of --num_images generated images against as many real ones at the final resolution, drawn
from the *whole* dataset (so with --max_images the score also measures how far G is from the images
it never saw). The untrained generator of each seed is scored the same way (the baseline). Runs
already complete are only scored again; interrupted ones resume; a diverged run (the trainer's
non-finite limit) is recorded, not fatal. Results: one JSON line per run appended to
OUTDIR/results.jsonl (with adaptive augmentation also its final p), and a Markdown table (mean and
standard deviation over seeds) printed and written to OUTDIR/summary.md.
"""

from __future__ import annotations

import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags
from tqdm import tqdm

from pggan import checkpoint
from pggan.cli.runner import UsageError, program_main, run_program
from pggan.data import config as data_config
from pggan.data import diff_augment
from pggan.metrics import MetricSuite
from pggan.model import networks
from pggan.sampling import generation, latent_space
from pggan.training import landscape, loop

_DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "loss_comparison.py"
)
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    _DEFAULT_CONFIG,
    "Recipe every combination trains with (override fields with --config.<field>=...); "
    "its loss, d_normalization and seed are set per run.",
)
_OUTDIR = flags.DEFINE_string(
    "outdir", None, "Directory for the runs (OUTDIR/<combination>/seed<k>), results.jsonl and summary.md."
)
_COMBINATIONS = flags.DEFINE_list(
    "combinations",
    list(landscape.COMPARED),
    "Combinations <loss>_<regularizer>[+<mode>...] to train (see pggan/training/landscape.py); 'all' "
    "for every one of landscape.COMBINATIONS, 'stability' for landscape.STABILITY.",
)
_GROUPS = {"all": landscape.COMBINATIONS, "stability": landscape.STABILITY}
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds of every combination.")
_MAX_IMAGES = flags.DEFINE_list(
    "max_images",
    ["0"],
    "Train every combination on the first N images of the dataset, for each N listed "
    "(config.dataset.max_images; 0 = every image). SWD is always measured against the whole dataset.",
)
_EVAL_SEED = flags.DEFINE_integer(
    "eval_seed",
    1000,
    "Seed of the generated images' latents, of the real images "
    "chosen and of SWD's random patches and directions (the same for every run).",
    lower_bound=0,
)
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images",
    0,
    "Real and generated images per SWD evaluation; 0 = every real "
    "image. SWD's sorts are slow on CPUs (minutes for 1,797 images): fewer images "
    "are faster and noisier.",
    lower_bound=0,
)
_FAST_COMPILE = flags.DEFINE_bool(
    "fast_compile",
    False,
    "Compile with most XLA optimizations disabled: on CPUs "
    "compiling every combination's steps takes longer than the short training runs. "
    "Changes speed, not what is computed.",
)


def _parse_request() -> tuple[list[str], list[int], list[int]]:
    """(combinations, seeds, max_images values) of the command line."""
    if not _OUTDIR.value:
        raise UsageError("--outdir is required: the directory for the runs and the results")
    names = [name for entry in _COMBINATIONS.value for name in _GROUPS.get(entry, (entry,))]
    for name in names:
        try:
            landscape.parse(name)
        except ValueError as e:
            raise UsageError(str(e)) from None
    for flag, values, example in (("--seeds", _SEEDS.value, "0,1,2"), ("--max_images", _MAX_IMAGES.value, "100,500")):
        if not values or not all(v.strip().isdigit() for v in values):
            raise UsageError(f"{flag} must be non-negative integers, e.g. {example}; got {values}")
    return names, [int(s) for s in _SEEDS.value], [int(n) for n in _MAX_IMAGES.value]


class Scorer:
    """SWD of generators against the real images of one dataset level (statistics computed once)."""

    def __init__(self, config, eval_seed: int, num_images: int = 0):
        """num_images: reals (a fixed random subset of the whole dataset, whatever config.dataset.max_images
        says) and fakes per evaluation; 0 = every real image."""
        spec = networks.ModelSpec.from_config(config.model)
        whole = ml_collections.ConfigDict({**config.dataset.to_dict(), "max_images": 0})
        dataset = data_config.open_from_config(
            whole, resolution=spec.resolution, channels=spec.num_channels, label_size=spec.label_size
        )
        count = min(num_images or dataset.num_examples, dataset.num_examples)
        chosen = np.sort(np.random.default_rng(eval_seed).permutation(dataset.num_examples)[:count])
        reals, _ = dataset.level(spec.resolution).read(chosen)
        self.num_reals = count
        self.suite = MetricSuite(names=("swd",), seed=eval_seed)
        self.real_stats = self.suite.real_statistics([reals])
        self.latents = latent_space.grid_latents(eval_seed, count, spec.latent_size)
        self._untrained: dict[int, float] = {}

    def score(self, generator: networks.Generator, resolution: int, alpha: float) -> dict[str, float]:
        """{'swd_avg': ..., 'swd_<res>': ...} of the generator's images of the fixed latents."""
        sampler = generation.Sampler(generator, resolution=resolution, alpha=alpha)
        return self.suite.evaluate([sampler.images(self.latents)], self.real_stats)

    def untrained_swd(self, spec: networks.ModelSpec, seed: int) -> float:
        """SWD of the generator as initialised from `seed` (the same for every combination; cached)."""
        if seed not in self._untrained:
            generator, _ = networks.build_networks(spec, seed)
            self._untrained[seed] = self.score(generator, spec.resolution, 1.0)["swd_avg"]
        return self._untrained[seed]


def _finite(generator: networks.Generator) -> bool:
    return all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree.leaves(networks.parameters(generator)))


def _run_one(config, name: str, seed: int, max_images: int, workdir: str, scorer: Scorer) -> dict:
    """Trains (or resumes) one run and scores its final EMA generator and its untrained generator."""
    run_config = landscape.apply(config, name)
    run_config.seed = seed
    run_config.dataset.max_images = max_images
    run = {"combination": name, "seed": seed, "max_images": max_images}
    started = time.time()
    try:
        loop.train_and_evaluate(run_config, workdir)
    except loop.TrainingError as e:  # diverged: recorded, the comparison goes on
        return {**run, "finite": False, "train_seconds": time.time() - started, "error": str(e)}
    generator, meta = checkpoint.load_generator(workdir)
    if meta["resolution"] != generator.spec.resolution:
        raise UsageError(
            f"{workdir} stopped at {meta['resolution']}x{meta['resolution']}: the budget must reach "
            f"the final {generator.spec.resolution}x{generator.spec.resolution}; raise "
            "--config.schedule.total_kimg"
        )
    adaptive = run_config.augment.target > 0
    with checkpoint.CheckpointReader(workdir) as reader:
        counters = reader.counters(meta["step"])
        if adaptive:
            run["augment_p"] = float(reader.saved_item(meta["step"], diff_augment.STATE_ITEM)["p"])
    final = scorer.score(generator, meta["resolution"], meta["alpha"])
    untrained = scorer.untrained_swd(generator.spec, seed)
    return {
        **run,
        "kimg": meta["nimg"] / 1000,
        "num_reals": scorer.num_reals,
        "swd": final["swd_avg"],
        "untrained_swd": untrained,
        "swd_levels": final,
        "finite": _finite(generator),
        "skipped_d": counters["skipped_d"],
        "skipped_g": counters["skipped_g"],
        "train_seconds": meta["elapsed_sec"],
        "wall_seconds": time.time() - started,
    }


def _run() -> None:
    names, seeds, max_images = _parse_request()
    if _FAST_COMPILE.value:
        jax.config.update("jax_disable_most_optimizations", True)
    outdir = os.path.abspath(os.path.expanduser(_OUTDIR.value))
    os.makedirs(outdir, exist_ok=True)
    scorer = Scorer(_CONFIG.value, _EVAL_SEED.value, _NUM_IMAGES.value)
    results = []
    with open(os.path.join(outdir, "results.jsonl"), "a") as log:
        runs = [(n, m, s) for n in names for m in max_images for s in seeds]
        for name, images, seed in tqdm(runs, desc="Training combinations", unit="run"):
            workdir = os.path.join(outdir, name, *([f"images{images}"] if images else []), f"seed{seed}")
            result = _run_one(_CONFIG.value, name, seed, images, workdir, scorer)
            log.write(json.dumps(result) + "\n")
            log.flush()
            results.append(result)
    table = landscape.summary_table(results)
    with open(os.path.join(outdir, "summary.md"), "w") as file:
        file.write(table)
    print(table)


main = program_main(_run)


if __name__ == "__main__":
    run_program(main, "__main__")
