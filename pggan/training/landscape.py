"""Named training setups: adversarial loss, penalties, D normalization, and stabilizing modes on top.

A combination is `<loss>_<regularizer>`, optionally followed by modes: `<loss>_<regularizer>+<mode>+...`.
The loss is one of `losses.LOSSES` or 'mmd', the regularizer one of REGULARIZERS, each a fixed set of
config overrides with every other penalty off; a mode (MODES) changes the optimizer, D's inputs or
the data augmentation. `apply(config, name)` writes a combination into a training config.
`COMBINATIONS` lists the 27 without modes, `COMPARED` the ten that docs/loss_comparison.md compares
first (`tools/compare_losses.py`), `STABILITY` the stabilizing modes it compares next.

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
    wgan_clip, mmd_clip  weight clipping of D to +-0.01 with RMSProp, CLIP_D_STEPS D steps per G step and
                   learning rate CLIP_LR (the original WGAN, Arjovsky et al. 2017; MMD GAN, Li et al. 2017)
    mmd_gp, mmd_sn, mmd_none  MMD GAN on MMD_FEATURES features of D with the rational-quadratic kernel
                   mixture; gp: the one-centred penalty on its witness function, lambda 1 (MMD_GP;
                   Binkowski et al. 2018)

Modes, after '+' (any number, e.g. logistic_r1+oadam+ada):
    oadam          optimistic Adam (Daskalakis et al. 2018; optimism 1)
    extragrad      extragradient steps (Gidel et al. 2019)
    dat            adversarial training of D: FGSM-perturbed reals and fakes, L-inf radius DAT_EPSILON
                   (Zhong et al. 2020); not with mmd
    ada            ADA's adaptive augmentation of everything D sees (policy 'ada': flips, 90-degree
                   rotations, DiffAugment's colour, integer translation; p from 0 towards r_t = 0.6),
                   p able to cross [0, 1] in ADA_SPEED_KIMG (ADA: 500 kimg; short runs)
    bgc            the same with ADA's full pipeline (policy 'bgc': flips, 90-degree rotations, integer
                   translation, the resampled geometric transforms and ADA's colour transforms)
    diffaugment    DiffAugment: colour, translation and cutout with p = 1
"""

from __future__ import annotations

import ml_collections
import numpy as np

from pggan.model import losses

R1_GAMMA = 1.0
LAZY_INTERVAL = 4
_NO_PENALTY = {"gp_lambda": 0.0, "gp0_lambda": 0.0, "r1_gamma": 0.0, "r2_gamma": 0.0, "reg_interval": 0, "drift": 0.0}
# The original WGAN's (Arjovsky et al. 2017): 5 critic steps per G step, RMSProp at 5e-5.
CLIP_D_STEPS = 5
CLIP_LR = 5e-5
MMD_FEATURES = 16  # model.critic_size of the mmd combinations (Binkowski et al.'s CIFAR-10 setting)

# regularizer -> {config section: overrides}; every penalty not named is off, D normalization 'none'
REGULARIZERS = {
    "gp": {"loss": {"gp_lambda": 10.0, "gp_target": 1.0, "drift": 0.001}},
    "r1": {"loss": {"r1_gamma": R1_GAMMA}},
    "sn": {"d_normalization": {"method": "spectral"}},
    "gran": {"d_normalization": {"method": "gran"}},
    "none": {},
    "gp0": {"loss": {"gp0_lambda": 10.0}},
    "r1lazy": {"loss": {"r1_gamma": R1_GAMMA, "reg_interval": LAZY_INTERVAL}},
    "r1r2": {"loss": {"r1_gamma": R1_GAMMA, "r2_gamma": R1_GAMMA}},
    "clip": {
        "d_normalization": {"method": "clip"},
        "optimizer": {"name": "rmsprop"},
        "schedule": {"d_repeats": CLIP_D_STEPS, "g_lr_base": CLIP_LR, "d_lr_base": CLIP_LR},
    },
}
# The one-centred GP of the losses other than WGAN (see the module doc).
OTHER_LOSS_GP = {"gp_lambda": 1.0, "gp_target": 1.0, "drift": 0.0}
# MMD GAN-GP's penalty on the witness function (Binkowski et al. 2018: lambda 1); MMD takes no drift.
MMD_GP = {"gp_lambda": 1.0, "gp_target": 1.0, "drift": 0.0}
MMD_REGULARIZERS = ("gp", "sn", "clip", "none")
# The drift weight of wgan_gran. GraN makes D only *piecewise* K-Lipschitz: its score jumps between the
# linear pieces of the critic, by amounts nothing bounds. The other losses saturate, but the WGAN
# objective E[g(real)] - E[g(fake)] is linear and has no maximum over such critics: without drift the
# scores grew without limit (real 2,684 at 8 kimg) and G ended worse than untrained. The drift term
# drift * g(real)^2 caps the real score the critic aims for at 1 / (2 drift): 500 with the paper's 0.001
# was still too loose, 0.01 (50) trains (docs/loss_comparison.md).
WGAN_GRAN_DRIFT = 0.01
DAT_EPSILON = 0.01  # about 1.3 grey levels of 255 (images in [-1, 1])
ADA_SPEED_KIMG = 5.0

# mode -> {config section: overrides}
MODES = {
    "oadam": {"optimizer": {"name": "optimistic_adam", "optimism": 1.0}},
    "extragrad": {"optimizer": {"extragradient": True}},
    "dat": {"loss": {"dat_epsilon": DAT_EPSILON, "dat_steps": 1}},
    "ada": {"augment": {"policy": "ada", "probability": 0.0, "target": 0.6, "speed_kimg": ADA_SPEED_KIMG}},
    "bgc": {"augment": {"policy": "bgc", "probability": 0.0, "target": 0.6, "speed_kimg": ADA_SPEED_KIMG}},
    "diffaugment": {"augment": {"policy": "diffaugment", "probability": 1.0, "target": 0.0}},
}
_GRID_REGULARIZERS = ("gp", "r1", "sn", "gran", "none")
_EXTRAS = ("logistic_gp0", "logistic_r1lazy", "logistic_r1r2", "wgan_clip", "mmd_gp", "mmd_sn", "mmd_none", "mmd_clip")

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
# The stabilizing options docs/loss_comparison.md compares next ('--combinations=stability'): the original
# WGAN, MMD GAN-GP and every mode but bgc (its small-data table's) on logistic_r1, the R1 baseline.
STABILITY = (
    "wgan_clip",
    "mmd_gp",
    "logistic_r1+oadam",
    "logistic_r1+extragrad",
    "logistic_r1+dat",
    "logistic_r1+ada",
    "logistic_r1+diffaugment",
)


def parse(name: str) -> tuple[str, str, tuple[str, ...]]:
    """'logistic_r1lazy+oadam' -> ('logistic', 'r1lazy', ('oadam',)); ValueError naming the valid parts otherwise."""
    base, *modes = name.split("+")
    loss, _, regularizer = base.partition("_")
    if loss not in losses.LOSSES + (losses.MMD,) or regularizer not in REGULARIZERS:
        raise ValueError(
            f"unknown combination {name!r}: use <loss>_<regularizer>[+<mode>...] with loss in "
            f"{losses.LOSSES + (losses.MMD,)}, regularizer in {tuple(REGULARIZERS)} and modes in "
            f"{tuple(MODES)}, e.g. {COMBINATIONS[0]} or {STABILITY[-1]}"
        )
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or len(set(modes)) != len(modes):
        raise ValueError(f"combination {name!r}: modes must be distinct ones of {tuple(MODES)}, got {modes}")
    if loss == losses.MMD and regularizer not in MMD_REGULARIZERS:
        raise ValueError(f"combination {name!r}: the mmd loss takes the regularizers {MMD_REGULARIZERS} only")
    if loss == losses.MMD and "dat" in modes:
        raise ValueError(f"combination {name!r}: DAT (+dat) does not apply to the mmd loss")
    if len({"ada", "bgc", "diffaugment"} & set(modes)) > 1:
        raise ValueError(f"combination {name!r}: choose one augmentation, +ada, +bgc or +diffaugment")
    return loss, regularizer, tuple(modes)


def apply(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """A copy of training `config` with the loss, penalties, D normalization and modes of combination `name`."""
    loss, regularizer, modes = parse(name)
    overrides = dict(REGULARIZERS[regularizer])
    if regularizer == "gp" and loss != "wgan":
        overrides["loss"] = MMD_GP if loss == losses.MMD else OTHER_LOSS_GP
    if (loss, regularizer) == ("wgan", "gran"):
        overrides["loss"] = {"drift": WGAN_GRAN_DRIFT}
    config = ml_collections.ConfigDict(config.to_dict())
    config.loss.update({"name": loss, **_NO_PENALTY})
    config.d_normalization.method = "none"
    if loss == losses.MMD:
        config.model.critic_size = MMD_FEATURES
    for section, values in [*overrides.items(), *(item for mode in modes for item in MODES[mode].items())]:
        config[section].update(values)
    return config


def summary_table(results: list[dict]) -> str:
    """A Markdown table of comparison results, best mean final SWD first.

    results: one dict per run with 'combination', 'swd' and 'untrained_swd' (1e3 x SWD), 'finite'
    (bool: the final generator's parameters), 'skipped_d', 'skipped_g' (skipped non-finite steps) and
    'train_seconds', optionally 'max_images' (trained on the first N images; 0 or absent = all); a run
    that diverged has an 'error' and no scores. A row per combination and max_images ('logistic_r1,
    100 images'): runs,
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
        images = result.get("max_images", 0)
        by_name.setdefault(result["combination"] + (f", {images} images" if images else ""), []).append(result)

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
