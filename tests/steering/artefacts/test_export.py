import json

import numpy as np
import pytest
import torch

from steering.artefacts.bind import (
    engine_for_profile,
    make_profile,
    system_for,
    weights_for,
)
from steering.artefacts.export import (
    ExportError,
    control_vector_layer,
    export_checkpoint,
    export_control_vector,
    export_profile,
    folded_model,
    profile_vector,
)
from steering.artefacts.profile import load_profile
from steering.cli.main import main
from steering.paths import ROOT
from steering.runtime.engine import GenerationConfig, SteeringEngine

PROMPTS = ["Why is the sky blue?", "Dogs like bones and walks."]



def test_folded_checkpoint_matches_the_hooked_model(tiny_engine, tmp_path):
    from transformers import AutoModelForCausalLM

    w = {5: 0.8, 17: -0.5}
    vec = tiny_engine.steering_vectors([w])[0]
    folded_model(tiny_engine.model, tiny_engine.basis.layer, vec).save_pretrained(tmp_path / "ckpt")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()  # plain transformers, no hooks
    assert plain.config.mlp_bias is True
    assert sum(len(l._forward_hooks) for l in plain.model.layers) == 0

    cfg = GenerationConfig(max_new_tokens=16, repetition_penalty=1.0, return_logits=True)
    hooked = tiny_engine.generate(PROMPTS, [w, w], config=cfg)
    enc = tiny_engine._encode(PROMPTS, None)
    out = plain.generate(**enc, max_new_tokens=16, do_sample=False, output_logits=True, return_dict_in_generate=True,
                         pad_token_id=tiny_engine.tokenizer.pad_token_id, eos_token_id=tiny_engine.tokenizer.eos_token_id)
    new = out.sequences[:, enc["input_ids"].shape[1]:]
    logits = torch.stack(out.logits, dim=1)
    for i, h in enumerate(hooked):
        assert new[i, : len(h.token_ids)].tolist() == h.token_ids
        assert torch.allclose(logits[i, : len(h.token_ids)], h.logits, atol=1e-4)
    # And it really is steered: differs from the unsteered model.
    unsteered = tiny_engine.generate(PROMPTS, config=cfg)
    assert any(u.token_ids != h.token_ids for u, h in zip(unsteered, hooked))


def test_zero_vector_fold_is_the_original_model(tiny_engine):
    m = folded_model(tiny_engine.model, 2, torch.zeros(tiny_engine.model.config.hidden_size))
    ids = torch.tensor([[1, 5, 9, 13, 20]])
    with torch.no_grad():
        assert torch.allclose(m(ids).logits, tiny_engine.model(ids).logits, atol=1e-5)


def test_refuses_architectures_where_the_fold_is_not_exact(tiny_engine):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    gemma = Gemma2ForCausalLM(Gemma2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=16))
    with pytest.raises(ExportError, match="gemma2"):
        folded_model(gemma, 1, torch.zeros(32))


def test_a_profile_free_direction_reaches_the_steering_vector_and_the_fold(tiny_runtime):
    """weights_for turns the profile's free direction into engine units; the folded bias carries it."""
    engine = tiny_runtime.engine
    d = engine.model.config.hidden_size
    free = [0.0] * d
    free[1] = 0.25
    prof = make_profile(tiny_runtime, "p", "b", {5: 0.3}, free_direction=free, free_share=0.5)
    steer = weights_for(prof, engine)
    assert steer.free is not None and float(steer.free[1]) == pytest.approx(0.25)
    with_free = engine.steering_vectors([steer])[0]
    without = engine.steering_vectors([{5: 0.3}])[0]
    assert torch.allclose(with_free - without, engine.basis.scale * torch.tensor(free))
    m = folded_model(engine.model, engine.basis.layer, with_free)
    bias = m.model.layers[engine.basis.layer].mlp.down_proj.bias
    assert torch.allclose(bias, with_free, atol=1e-6)


# ---------------------------------------------------------------- generation config

def test_checkpoint_generation_config_carries_the_app_decoding(tiny_runtime, tmp_path):
    """The saved generation_config.json is the app's: greedy, its repetition penalty and length."""
    from transformers import AutoModelForCausalLM


    app = GenerationConfig()
    engine = tiny_runtime.engine
    # All-zero weights: the tiny random model's steered answers repeat one token with or without a
    # penalty (see the first test for steering); its unsteered ones show the penalty at work.
    out = export_checkpoint(make_profile(tiny_runtime, "p", "b", {}), engine, tmp_path / "ckpt")
    saved = json.loads((out / "generation_config.json").read_text())
    assert saved["repetition_penalty"] == app.repetition_penalty != 1.0
    assert saved["max_new_tokens"] == app.max_new_tokens
    assert saved.get("do_sample", False) is False and app.temperature == 0  # greedy, like the app's default
    assert saved["eos_token_id"] == engine.tokenizer.eos_token_id and saved["pad_token_id"] == engine.tokenizer.pad_token_id
    assert "`repetition_penalty` 1.1" in (out / "README.md").read_text()

    # Plain generate() with nothing but the inputs decodes exactly like the engine with its defaults.
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    enc = engine._encode(PROMPTS[:1], None)
    new = plain.generate(**enc)[0, enc["input_ids"].shape[1]:].tolist()
    [app_answer] = engine.generate(PROMPTS[:1])
    assert len(app_answer.token_ids) > 20
    assert new[: len(app_answer.token_ids)] == app_answer.token_ids
    # ... and the penalty matters here: without it the greedy answer is another one.
    [no_penalty] = engine.generate(PROMPTS[:1], config=GenerationConfig(repetition_penalty=1.0))
    assert no_penalty.token_ids != app_answer.token_ids


# ---------------------------------------------------------------- llama.cpp control vector

def test_control_vector_layer_is_the_hook_layer():
    """The SAE hook on decoder layer L's output (0-based, `model.layers.L`) is llama.cpp's direction.L."""
    assert control_vector_layer(15, 30) == 15
    assert control_vector_layer(1, 4) == 1 and control_vector_layer(3, 4) == 3
    with pytest.raises(ExportError, match="layer 0"):
        control_vector_layer(0, 30)  # llama.cpp has no slot for block 0 (direction.0 is rejected)
    with pytest.raises(ExportError, match="not a decoder layer"):
        control_vector_layer(30, 30)


def _read_control_vector(path):
    import gguf

    r = gguf.GGUFReader(str(path))

    def field(name):
        f = r.fields[name]
        v = f.parts[f.data[0]]
        return bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING else int(v[0])

    tensors = {t.name: t for t in r.tensors}
    return field, tensors


def llama_cpp_cvec_data(path, n_embd: int):
    """The flat buffer llama.cpp's control-vector loader builds: direction.N at offset (N - 1) * n_embd."""
    _, tensors = _read_control_vector(path)
    n_max = max(int(name.split(".")[1]) for name in tensors)
    data = np.zeros(n_max * n_embd, dtype=np.float32)
    for name, t in tensors.items():
        n = int(name.split(".")[1])
        assert n >= 1, "llama.cpp rejects direction.0"
        data[(n - 1) * n_embd : n * n_embd] += np.asarray(t.data, dtype=np.float32)
    return data


def test_control_vector_gguf_reads_back(tiny_runtime, tmp_path):
    import gguf


    engine = tiny_runtime.engine
    d = engine.model.config.hidden_size
    free = [0.0] * d
    free[3] = 0.5
    prof = make_profile(tiny_runtime, "kidsy", "b", {5: 0.8, 17: -0.5}, free_direction=free, free_share=0.3)
    out = export_control_vector(prof, engine, tmp_path / "cvec")
    path = out / "kidsy.gguf"
    field, tensors = _read_control_vector(path)
    assert field("general.architecture") == "controlvector"
    assert field("controlvector.model_hint") == "llama"
    assert field("controlvector.layer_count") == engine.model.config.num_hidden_layers == 4
    assert sorted(tensors) == ["direction.1", "direction.2", "direction.3"]
    for t in tensors.values():
        assert t.tensor_type == gguf.GGMLQuantizationType.F32 and t.n_elements == d
        assert tuple(int(x) for x in t.shape) == (d,)
    # The vector is the profile's steering vector (features x scale x unit decoder rows + free direction).
    expected = engine.steering_vectors([{5: 0.8, 17: -0.5}])[0] + engine.basis.scale * torch.tensor(free)
    assert torch.allclose(profile_vector(prof, engine), expected)
    assert engine.basis.layer == 2
    assert np.allclose(np.asarray(tensors["direction.2"].data), expected.numpy(), atol=1e-6)
    assert not np.any(np.asarray(tensors["direction.1"].data)) and not np.any(np.asarray(tensors["direction.3"].data))
    assert "--control-vector kidsy.gguf" in (out / "README.md").read_text()
    assert json.loads((out / "steering_profile.json").read_text())["name"] == "kidsy"


def test_control_vector_applied_as_llama_cpp_does_steers_like_the_engine(tiny_runtime, tmp_path):
    """Apply the GGUF the way llama.cpp does (after block il add data[(il - 1) * n_embd:...], il >= 1)
    to the plain model: greedy tokens and logits equal the hooked engine's."""

    engine = tiny_runtime.engine
    w = {5: 0.8, 17: -0.5}
    out = export_control_vector(make_profile(tiny_runtime, "p", "b", w), engine, tmp_path / "cvec")
    n_embd = engine.model.config.hidden_size
    data = torch.from_numpy(llama_cpp_cvec_data(out / "p.gguf", n_embd))

    def add(il):
        def hook(_m, _i, output):
            v = data[(il - 1) * n_embd : il * n_embd]
            if isinstance(output, tuple):
                return (output[0] + v,) + output[1:]
            return output + v
        return hook

    handles = [layer.register_forward_hook(add(il)) for il, layer in enumerate(engine.model.model.layers)
               if il >= 1 and il * n_embd <= len(data)]
    cfg = GenerationConfig(max_new_tokens=12, return_logits=True)
    try:
        with_cvec = engine.generate(PROMPTS, config=cfg)  # unsteered by the engine: only the control vector acts
    finally:
        for h in handles:
            h.remove()
    hooked = engine.generate(PROMPTS, [w, w], config=cfg)
    unsteered = engine.generate(PROMPTS, config=cfg)
    for c, h in zip(with_cvec, hooked):
        assert c.token_ids == h.token_ids
        assert torch.allclose(c.logits, h.logits, atol=1e-4)
    assert any(u.token_ids != h.token_ids for u, h in zip(unsteered, hooked))


def test_unknown_export_format_is_refused(tiny_runtime):
    with pytest.raises(ExportError, match="unknown export format"):
        export_profile(make_profile(tiny_runtime, "p", "b", {}), "/nonexistent", fmt="onnx")


# ---------------------------------------------------------------- the real default model and kids' profile

KIDS_PROMPTS = ["Why is the sky blue?", "How do plants grow?", "Why do cats have whiskers?"]


@pytest.mark.model
def test_kids_checkpoint_served_by_plain_transformers_gives_the_app_answers(tmp_path):
    """Export the shipped kids' profile with the CLI, load it with plain transformers, send the
    profile's system prompt with the exported chat template, and generate() with the saved generation
    config only: token for token the app's steered answers (full-precision decoding)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer


    profile = load_profile(ROOT / "assets" / "profiles" / "kids.json")
    engine = engine_for_profile(profile)
    if getattr(engine, "decode", "reference") not in ("reference", "float32"):
        # A quantised decode path (int4, bfloat16) cannot match a float32 checkpoint bit for bit:
        # compare with the app's answers at full precision, on the same loaded model.
        engine = SteeringEngine(engine.model, engine.tokenizer, engine.basis, engine.sae)
    system = system_for(profile)
    assert main(["export", "--profile", str(ROOT / "assets" / "profiles" / "kids.json"), "--out", str(tmp_path / "ckpt")]) == 0
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    n = 48  # tokens per answer, on both sides (the saved config's other settings apply as saved)
    for prompt in KIDS_PROMPTS[:3]:
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True, return_tensors="pt")
        with torch.no_grad():
            ids = plain.generate(**enc, max_new_tokens=n)[0, enc["input_ids"].shape[1]:].tolist()
        [app] = engine.generate([prompt], [weights_for(profile, engine)], system=system, config=GenerationConfig(max_new_tokens=n))
        served = tok.decode(ids, skip_special_tokens=True).strip()
        assert ids[: len(app.token_ids)] == app.token_ids, (prompt, served, app.text)
        assert served == app.text
        assert len(app.token_ids) > 10
        if prompt == KIDS_PROMPTS[0]:  # without the saved penalty the served answer is another one
            with torch.no_grad():
                raw = plain.generate(**enc, max_new_tokens=n, repetition_penalty=1.0)[0, enc["input_ids"].shape[1]:].tolist()
            assert raw[: len(app.token_ids)] != app.token_ids


@pytest.mark.model
def test_kids_control_vector_on_the_default_model(tmp_path):
    profile = load_profile(ROOT / "assets" / "profiles" / "kids.json")
    engine = engine_for_profile(profile)
    assert main(["export", "--profile", str(ROOT / "assets" / "profiles" / "kids.json"), "--out", str(tmp_path / "cv"),
                 "--format", "control-vector"]) == 0
    field, tensors = _read_control_vector(tmp_path / "cv" / "kids.gguf")
    assert field("general.architecture") == "controlvector" and field("controlvector.layer_count") == 30
    assert sorted(tensors, key=lambda n: int(n.split(".")[1])) == [f"direction.{n}" for n in range(1, 30)]
    vec = profile_vector(profile, engine).numpy()
    assert vec.shape == (576,) and np.linalg.norm(vec) > 1
    assert np.allclose(np.asarray(tensors["direction.15"].data), vec, atol=1e-6)
    data = llama_cpp_cvec_data(tmp_path / "cv" / "kids.gguf", 576)
    assert np.allclose(data[(15 - 1) * 576 : 15 * 576], vec, atol=1e-6)  # the offset checked against llama.cpp
    assert np.count_nonzero(data) == np.count_nonzero(vec)
