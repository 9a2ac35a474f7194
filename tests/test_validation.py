"""Config values that must be refused with one line naming the field, before anything is compiled."""

import jax
import pytest

from pggan.training import validation
from pggan.training.config import ConfigError
from tests.run_support import load_recipe

# (field, value, devices, the expected message part)
REFUSED = [
    ("schedule.total_kimg", float("inf"), 8, "config.schedule.total_kimg must be a positive number, got inf"),
    ("schedule.total_kimg", float("nan"), 8, "config.schedule.total_kimg must be a positive number, got nan"),
    ("schedule.stabilize_kimg", float("inf"), 8, "config.schedule.stabilize_kimg must be a number >= 0, got inf"),
    ("schedule.transition_kimg", -1.0, 8, "config.schedule.transition_kimg must be a number >= 0, got -1.0"),
    ("schedule.tick_kimg_base", float("nan"), 8, "config.schedule.tick_kimg at 4x4 must be a positive number"),
    ("model.mbstd_group_size", -3, 8, "model.mbstd_group_size must be >= 0 (0 or 1 = no minibatch-stddev layer)"),
    ("model.fmap_decay", float("nan"), 8, "model.fmap_decay must be a number >= 0, got nan"),
    ("model.pixelnorm_epsilon", -1.0, 8, "model.pixelnorm_epsilon must be a positive number, got -1.0"),
    ("optimizer.eps", float("inf"), 8, "config.optimizer.eps must be a positive number, got inf"),
    ("ema.half_life_kimg", float("inf"), 8, "config.ema.half_life_kimg and config.ema.rampup must be numbers >= 0"),
    ("dataset.on_device_memory_fraction", 2.0, 8, "config.dataset.on_device_memory_fraction must be in (0, 1]"),
    # 10 images on 3 devices: refused, not rounded down to 9 as the official code did.
    (
        "schedule.minibatch_base",
        10,
        3,
        "the minibatch at 4x4 is 10, which does not divide over the 3 devices; set "
        "config.schedule.minibatch[4] (or minibatch_base) to a multiple of 12, e.g. 12",
    ),
]


@pytest.mark.parametrize("field,value,devices,message", REFUSED, ids=[f"{c[0]}={c[1]}" for c in REFUSED])
def test_impossible_values_are_refused_in_one_line(field, value, devices, message):
    config = load_recipe("quickstart")
    section, name = field.split(".")
    with config.unlocked():
        config[section][name] = value
        config.schedule.minibatch = {}  # the base applies at every resolution
    with pytest.raises(ConfigError) as error:
        validation.plan_run(config, jax.devices()[:devices])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_quickstart_recipe_is_valid_on_one_and_on_eight_devices():
    for devices in (1, 8):
        validation.plan_run(load_recipe("quickstart"), jax.devices()[:devices])
