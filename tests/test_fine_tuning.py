"""config.init_from: a new run starts from a run's (or an export's, or an official pickle's) G, D and EMA G at
their resolution, with its own counters; a different architecture is refused in one line."""

import shutil

import jax
import numpy as np
import pytest

import pggan
from pggan import network_sources
from pggan.errors import UserError
from pggan.model import networks
from pggan.official import importer
from pggan.training import loop, validation
from tests import official_format, tool_support
from tests.run_support import load_recipe, write_checkpoints
from tests.training_support import final_state, tiny_config

OFFICIAL_D = dict(num_channels=3, resolution=16, label_size=0, fmap_base=64, fmap_max=16)  # as in official_format


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A run whose only checkpoint holds networks trained up to 8x8 (of the tiny recipe's 16x16 model)."""
    workdir = tmp_path_factory.mktemp("source")
    write_checkpoints(workdir, load_recipe("tiny"), [(1000, 8, 1.0)])
    return str(workdir)


def _max_difference(a: dict, b: dict) -> float:
    return max(
        float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def test_a_fine_tuning_run_starts_from_the_networks_at_their_resolution(source, tmp_path):
    config = tiny_config(str(tmp_path / "data"), total_kimg=0.064)
    config.init_from = source
    config.seed = 5  # the source's networks were drawn from seed 0
    workdir = str(tmp_path / "tuned")
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    state, meta = final_state(workdir)
    # A fresh run of its own: 64 images shown (not 1000 + 64), all at 8x8 where the source stood.
    assert meta["nimg"] == 64 and meta["phase"]["resolution"] == 8 and meta["phase"]["alpha"] == 1.0
    start = network_sources.load(source, network_sources.ITEMS).parameters
    fresh_g, fresh_d = networks.build_networks(networks.ModelSpec.from_config(config.model), config.seed)
    for item, fresh in (("generator", fresh_g), ("discriminator", fresh_d), ("generator_ema", fresh_g)):
        moved = _max_difference(state[item], start[item])
        # Two rounds of Adam steps (lr 0.001) move each weight by well under 0.05 from where it started,
        # while randomly initialised networks differ by far more.
        assert moved < 0.05 < _max_difference(start[item], networks.parameters(fresh)), item
    assert _max_difference(state["generator"], start["generator"]) > 0  # it trained


def test_a_fine_tuning_run_resumes_after_its_source_is_gone(source, tmp_path):
    moved_source = str(tmp_path / "source")
    shutil.copytree(source, moved_source)
    config = tiny_config(str(tmp_path / "data"), total_kimg=0.032)
    config.init_from = moved_source
    workdir = str(tmp_path / "tuned")
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    shutil.rmtree(moved_source)
    config.schedule.total_kimg = 0.064  # the same command, longer: it resumes from its own checkpoint
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    _, meta = final_state(workdir)
    assert meta["nimg"] == 64 and meta["phase"]["resolution"] == 8  # still the source's 8x8 start
    with pytest.raises(UserError) as error:  # a new run does need it
        loop.train_and_evaluate(config, str(tmp_path / "new"), devices=jax.devices()[:1])
    assert moved_source in str(error.value) and "\n" not in str(error.value)


def test_a_different_architecture_or_an_export_without_d_is_refused_in_one_line(source, tmp_path):
    config = tiny_config(str(tmp_path / "data"))
    config.init_from = source
    config.model.latent_size = 16
    with pytest.raises(UserError) as error:
        validation.plan_run(config, jax.devices()[:1])
    message = str(error.value)
    assert "\n" not in message and "latent_size 8 vs 16" in message and "--config.model.latent_size=8" in message
    exported = str(tmp_path / "g_only.pggan")
    assert tool_support.run_main("export", f"--workdir={source}", f"--out={exported}") == 0
    config.model.latent_size = 8
    config.init_from = exported
    plan = validation.plan_run(config, jax.devices()[:1])
    assert plan.schedule.resolutions() == [8, 16]
    with pytest.raises(UserError, match="holds no generator or discriminator .* --training_networks"):
        loop.train_and_evaluate(plan, str(tmp_path / "run"))


def test_an_official_pickle_loads_and_plans_like_its_imported_checkpoint(tmp_path):
    pkl = tmp_path / "network-snapshot-000140.pkl"
    official_format.write_snapshot(pkl, dict(OFFICIAL_D, latent_size=8), OFFICIAL_D, seed=3, lod=0.5)
    workdir = str(tmp_path / "imported")
    summary = importer.import_snapshot(str(pkl), workdir)
    # Converted in memory or read from the imported checkpoint: the same generator, the same images.
    direct, imported = pggan.load_generator(str(pkl)), pggan.load_generator(workdir)
    assert (direct.resolution, direct.alpha) == (imported.resolution, imported.alpha) == (16, 0.5)
    np.testing.assert_array_equal(direct.generate(range(6)), imported.generate(range(6)))
    config = importer.imported_config(summary.spec, "digits")
    config.init_from = str(pkl)
    assert validation.plan_run(config, jax.devices()[:1]).schedule.resolutions() == [16]
    config.model.fmap_max = 32
    with pytest.raises(UserError, match="fmap_max 16 vs 32"):
        validation.plan_run(config, jax.devices()[:1])
