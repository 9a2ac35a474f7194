"""The typed training config: parsed from the recipes' ConfigDicts and saved JSON, every field explained."""

import dataclasses

import pytest

from pggan.training.config import SECTIONS, ConfigError, TrainingConfig, describe
from pggan.training.defaults import default_config
from tests.run_support import load_recipe

RECIPES = (
    "quickstart",
    "celebahq_1024",
    "lsun_256",
    "cifar10_32",
    "synthetic",
    "tiny",
    "loss_comparison",
    "few_images",
)


def test_the_default_config_dict_parses_to_the_defaults():
    assert TrainingConfig.parse(default_config()) == TrainingConfig()


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_parses_and_survives_its_saved_json(name):
    config = TrainingConfig.parse(load_recipe(name))
    assert TrainingConfig.from_json(config.to_json()) == config


def test_every_field_has_a_one_line_meaning():
    lines = describe(TrainingConfig())
    fields = sum(len(dataclasses.fields(section)) for section in SECTIONS.values())
    assert len(lines) == fields + 5  # seed, compilation_cache_dir, init_from, max_consecutive_nonfinite, cpu_ynnpack
    assert all("  # " in line and not line.endswith("# ") for line in lines)
    assert "schedule.total_kimg = 12000.0  # length of the run in thousands of real images shown" in lines


def test_unknown_fields_and_bad_values_are_config_errors():
    config = default_config()
    config.schedule.minibatch = {6: 32}
    with pytest.raises(ConfigError, match=r"config.schedule.minibatch has key 6; keys must be resolutions"):
        TrainingConfig.parse(config)
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['typo'\]"):
        TrainingConfig.parse({**default_config().to_dict(), "typo": 1})
    with pytest.raises(ConfigError, match=r"unknown loss config field\(s\) \['gamma'\]"):
        TrainingConfig.parse({"loss": {"gamma": 1.0}})
