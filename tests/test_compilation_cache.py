"""`keras-ba train --compilation-cache`: where JAX's persistent cache goes."""

import os

import pytest
from conftest import BACKEND

from keras_ba.cli import build_parser
from keras_ba.training import compilation_cache


def test_settings_resolve_to_a_folder_or_off(monkeypatch, tmp_path):
    monkeypatch.delenv(compilation_cache.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation_cache.resolve_cache_dir("auto") == str(tmp_path / "keras_ba" / "jax")
    monkeypatch.setenv(compilation_cache.ENV_VAR, "off")
    assert compilation_cache.resolve_cache_dir("auto") is None
    monkeypatch.setenv(compilation_cache.ENV_VAR, str(tmp_path / "mine"))
    assert compilation_cache.resolve_cache_dir("auto") == str(tmp_path / "mine")
    assert compilation_cache.resolve_cache_dir("OFF") is None
    with pytest.raises(ValueError, match="compilation-cache"):
        compilation_cache.resolve_cache_dir("  ")
    args = build_parser().parse_args(["train", "--compilation-cache", "off"])
    assert args.compilation_cache == "off"
    assert build_parser().parse_args(["train"]).compilation_cache == "auto"


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's cache: the JAX pass")
def test_enables_jax_persistent_cache(monkeypatch, tmp_path):
    import jax

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    saved = {
        name: getattr(jax.config, name)
        for name in (
            "jax_compilation_cache_dir",
            "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes",
        )
    }
    try:
        assert compilation_cache.enable_compilation_cache("off") is None
        assert jax.config.jax_compilation_cache_dir == saved["jax_compilation_cache_dir"]
        folder = compilation_cache.enable_compilation_cache(str(tmp_path / "cache"))
        assert folder == str(tmp_path / "cache") and os.path.isdir(folder)
        assert jax.config.jax_compilation_cache_dir == folder
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "user"))
        assert compilation_cache.enable_compilation_cache("auto") == str(tmp_path / "user")
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)
