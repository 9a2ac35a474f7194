"""The persistent compilation cache setting: the config field, and the environment variable's precedence."""

import jax

from pggan.training import compilation_cache


def test_compilation_cache_setting_and_the_environment_variable_precedence(tmp_path, monkeypatch):
    before = jax.config.jax_compilation_cache_dir
    try:
        monkeypatch.delenv(compilation_cache.ENV_VARIABLE, raising=False)
        assert compilation_cache.enable("") == before
        assert compilation_cache.enable(str(tmp_path / "jax")) == str(tmp_path / "jax")
        monkeypatch.setenv(compilation_cache.ENV_VARIABLE, str(tmp_path / "exported"))
        assert compilation_cache.enable(str(tmp_path / "other")) == str(tmp_path / "jax")  # left as it was
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
