import pytest
import torch

from steering.engine import GenerationConfig
from steering.export import ExportError, folded_model

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
    from steering.session import make_profile, weights_for

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
