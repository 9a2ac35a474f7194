"""Named combinations of adversarial loss, penalties and D normalization (the "GAN landscape").

A combination is `<loss>_<regularizer>`: the loss is one of `losses.LOSSES`, the regularizer one of
REGULARIZERS, each a fixed set of `config.loss` / `config.d_normalization` values with every other
penalty off. `apply(config, name)` writes a combination into a training config. `COMBINATIONS` lists
them all (22), `COMPARED` the ten that docs/loss_comparison.md compares (`tools/compare_losses.py`).

    wgan_gp        the official PGGAN loss: WGAN, one-centred GP (lambda 10) and drift 0.001
    *_gp           the one-centred GP with another loss: lambda 1, no drift (OTHER_LOSS_GP; lambda 10
                   and the drift collapsed logistic and least-squares training, docs/loss_comparison.md)
    *_r1           R1 on reals, gamma R1_GAMMA (Mescheder et al. 2018)
    *_sn           spectral normalization of D, no penalty (Miyato et al. 2018)
    *_gran         gradient normalization of D, no penalty (Bhaskara et al. 2022); wgan_gran adds the
                   drift term, WGAN_GRAN_DRIFT (see below)
    *_none         no penalty (not for wgan: its critic is unbounded without a Lipschitz constraint)
    logistic_gp0   zero-centred penalty on interpolates (lambda 10; Thanh-Tung et al. 2019)
    logistic_r1lazy  R1 every LAZY_INTERVAL D steps (StyleGAN2's lazy regularization)
    logistic_r1r2  R1 on reals and R2 on fakes
"""

from __future__ import annotations

import ml_collections
import numpy as np

from pggan.model import losses

R1_GAMMA = 1.0
LAZY_INTERVAL = 4
_NO_PENALTY = {"gp_lambda": 0.0, "gp0_lambda": 0.0, "r1_gamma": 0.0, "r2_gamma": 0.0, "reg_interval": 0, "drift": 0.0}

# regularizer -> (config.loss overrides, config.d_normalization.method)
REGULARIZERS = {
    "gp": ({"gp_lambda": 10.0, "gp_target": 1.0, "drift": 0.001}, "none"),
    "r1": ({"r1_gamma": R1_GAMMA}, "none"),
    "sn": ({}, "spectral"),
    "gran": ({}, "gran"),
    "none": ({}, "none"),
    "gp0": ({"gp0_lambda": 10.0}, "none"),
    "r1lazy": ({"r1_gamma": R1_GAMMA, "reg_interval": LAZY_INTERVAL}, "none"),
    "r1r2": ({"r1_gamma": R1_GAMMA, "r2_gamma": R1_GAMMA}, "none"),
}
# The one-centred GP of the losses other than WGAN (see the module doc).
OTHER_LOSS_GP = {"gp_lambda": 1.0, "gp_target": 1.0, "drift": 0.0}
# The drift weight of wgan_gran. GraN makes D only *piecewise* K-Lipschitz: its score jumps between the
# linear pieces of the critic, by amounts nothing bounds. The other losses saturate, but the WGAN
# objective E[g(real)] - E[g(fake)] is linear and has no maximum over such critics: without drift the
# scores grew without limit (real 2,684 at 8 kimg) and G ended worse than untrained. The drift term
# drift * g(real)^2 caps the real score the critic aims for at 1 / (2 drift): 500 with the paper's 0.001
# was still too loose, 0.01 (50) trains (docs/loss_comparison.md).
WGAN_GRAN_DRIFT = 0.01
_GRID_REGULARIZERS = ("gp", "r1", "sn", "gran", "none")
_EXTRAS = ("logistic_gp0", "logistic_r1lazy", "logistic_r1r2")

COMBINATIONS = (
    tuple(f"{loss}_{reg}" for loss in losses.LOSSES for reg in _GRID_REGULARIZERS if (loss, reg) != ("wgan", "none"))
    + _EXTRAS
)
# The combinations docs/loss_comparison.md compares (tools/compare_losses.py's default): every loss and
# every regularizer but r1r2, small enough for about an hour of shared CPU (each one compiles its steps).
COMPARED = (
    "wgan_gp",
    "wgan_sn",
    "logistic_none",
    "logistic_gp",
    "logistic_r1",
    "logistic_r1lazy",
    "logistic_gp0",
    "lsgan_gp",
    "hinge_sn",
    "hinge_gran",
)


def parse(name: str) -> tuple[str, str]:
    """'logistic_r1lazy' -> ('logistic', 'r1lazy'); ValueError naming the valid parts otherwise."""
    loss, _, regularizer = name.partition("_")
    if loss not in losses.LOSSES or regularizer not in REGULARIZERS:
        raise ValueError(
            f"unknown combination {name!r}: use <loss>_<regularizer> with loss in {losses.LOSSES} "
            f"and regularizer in {tuple(REGULARIZERS)}, e.g. {COMBINATIONS[0]}"
        )
    return loss, regularizer


def apply(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """A copy of training `config` with the loss, penalties and D normalization of combination `name`."""
    loss, regularizer = parse(name)
    loss_overrides, method = REGULARIZERS[regularizer]
    if regularizer == "gp" and loss != "wgan":
        loss_overrides = OTHER_LOSS_GP
    if (loss, regularizer) == ("wgan", "gran"):
        loss_overrides = {"drift": WGAN_GRAN_DRIFT}
    config = ml_collections.ConfigDict(config.to_dict())
    config.loss.update({"name": loss, **_NO_PENALTY, **loss_overrides})
    config.d_normalization.method = method
    return config


def summary_table(results: list[dict]) -> str:
    """A Markdown table of comparison results, best mean final SWD first.

    results: one dict per run with 'combination', 'swd' and 'untrained_swd' (1e3 x SWD), 'finite'
    (bool: the final generator's parameters), 'skipped_d', 'skipped_g' (skipped non-finite steps) and
    'train_seconds'; a run that diverged has an 'error' and no scores. A row per combination: runs,
    mean +- std over seeds of the final SWD, mean untrained SWD, runs ending below their untrained
    SWD, skipped steps, whether every run ended finite, mean training seconds.
    """
    rows = [
        "| combination | runs | final SWD (x1e3) | untrained SWD | below untrained | skipped D/G steps | finite "
        "| train s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_name: dict[str, list[dict]] = {}
    for result in results:
        by_name.setdefault(result["combination"], []).append(result)

    def mean_swd(runs):
        scored = [r["swd"] for r in runs if "error" not in r]
        return np.mean(scored) if len(scored) == len(runs) else np.inf

    for name, runs in sorted(by_name.items(), key=lambda item: mean_swd(item[1])):
        scored = [r for r in runs if "error" not in r]
        swd = np.array([r["swd"] for r in scored] or [np.nan])
        untrained = np.mean([r["untrained_swd"] for r in scored]) if scored else np.nan
        below = sum(r["swd"] < r["untrained_swd"] for r in scored)
        finite = (
            "yes"
            if len(scored) == len(runs) and all(r["finite"] for r in runs)
            else f"NO ({len(runs) - len(scored)} diverged)"
        )
        rows.append(
            f"| {name} | {len(runs)} | {swd.mean():.1f} ± {swd.std():.1f} | {untrained:.1f} | "
            f"{below}/{len(runs)} | {sum(r['skipped_d'] for r in scored)}/{sum(r['skipped_g'] for r in scored)} "
            f"| {finite} | {np.mean([r['train_seconds'] for r in runs]):.0f} |"
        )
    return "\n".join(rows) + "\n"
