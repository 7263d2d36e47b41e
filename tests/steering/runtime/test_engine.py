import threading

import pytest
import torch

from steering.runtime.basis import Steer, SteeringBasis
from steering.runtime.engine import GenerationConfig, SteeringEngine

PROMPT = "Why is the sky blue?"
CFG = GenerationConfig(max_new_tokens=12, repetition_penalty=1.0)


def raw_greedy(engine: SteeringEngine, prompt: str, n: int) -> list[int]:
    """Greedy tokens from plain transformers, no engine involved."""
    enc = engine._encode([prompt], None)
    out = engine.model.generate(
        **enc, max_new_tokens=n, do_sample=False, pad_token_id=engine.tokenizer.pad_token_id,
        eos_token_id=engine.tokenizer.eos_token_id,
    )
    ids = out[0, enc["input_ids"].shape[1] :].tolist()
    eos = engine.tokenizer.eos_token_id
    return ids[: ids.index(eos)] if eos in ids else ids


@pytest.fixture(params=["reference", "float32"])
def tiny_engine(request, tiny_model, tiny_tokenizer, tiny_sae):
    """Every engine behaviour holds on both decode paths: transformers generate with a hook, and
    the packed-weight fast path at full precision (which must give the very same tokens)."""
    return SteeringEngine(tiny_model, tiny_tokenizer, SteeringBasis.from_sae(tiny_sae, layer=2, scale=8.0), decode=request.param)


def hooks_on(engine: SteeringEngine) -> int:
    return sum(len(layer._forward_hooks) for layer in engine.layers)


def test_basis_vectors_sum_weighted_unit_directions(tiny_engine):
    b = tiny_engine.basis
    v = b.vectors([{3: 0.5, 7: -1.0}, None, {}])
    expected = b.scale * (0.5 * b.directions[3] - b.directions[7])
    assert torch.allclose(v[0], expected)
    assert torch.count_nonzero(v[1:]) == 0
    assert torch.allclose(b.directions.norm(dim=-1), torch.ones(b.d_sae), atol=1e-5)


def test_basis_rejects_out_of_range_index(tiny_engine):
    with pytest.raises(IndexError):
        tiny_engine.basis.vectors([{tiny_engine.basis.d_sae: 0.1}])


def test_zero_weights_give_exactly_the_unsteered_tokens(tiny_engine):
    plain = raw_greedy(tiny_engine, PROMPT, 12)
    [zero] = tiny_engine.generate([PROMPT], [{5: 0.0}], config=CFG)
    assert zero.token_ids == plain
    # A zero row next to a steered row goes through the hook (adding zeros): still identical.
    steered, zero_row = tiny_engine.generate([PROMPT, PROMPT], [{5: 1.0}, None], config=CFG)
    assert zero_row.token_ids == plain
    assert steered.token_ids != plain


def test_batch_rows_are_independent(tiny_engine):
    weights = [{5: 1.0}, {9: -0.8, 11: 0.6}, None, {5: 0.3}]
    batched = tiny_engine.generate([PROMPT] * 4, weights, config=CFG)
    for w, row in zip(weights, batched):
        [alone] = tiny_engine.generate([PROMPT], [w], config=CFG)
        assert row.token_ids == alone.token_ids
    assert len({tuple(r.token_ids) for r in batched}) >= 3


def test_steering_applies_to_generated_positions_not_only_the_prompt(tiny_engine):
    w = {5: 0.7}
    [gen] = tiny_engine.generate([PROMPT], [w], config=GenerationConfig(max_new_tokens=8, repetition_penalty=1.0, return_logits=True))
    assert len(gen.token_ids) >= 3
    # Recompute without a KV cache: one forward over prompt + generated tokens, steered everywhere.
    enc = tiny_engine._encode([PROMPT], None)
    full = torch.cat([enc["input_ids"], torch.tensor([gen.token_ids])], dim=1)
    with torch.no_grad(), tiny_engine.steering(tiny_engine.steering_vectors([w])):
        ref = tiny_engine.model(full).logits[0]
    n_prompt = enc["input_ids"].shape[1]
    for step in range(len(gen.token_ids)):
        assert torch.allclose(gen.logits[step], ref[n_prompt - 1 + step], atol=1e-4), step
    # And those generated-position logits differ from the unsteered ones.
    with torch.no_grad():
        plain = tiny_engine.model(full).logits[0]
    assert not torch.allclose(plain[n_prompt + 1], ref[n_prompt + 1], atol=1e-3)


def test_hooks_are_removed_after_an_exception(tiny_engine):
    class Boom:
        calls = 0

        def put(self, value):
            Boom.calls += 1
            if Boom.calls == 3:
                raise RuntimeError("boom")

        def end(self):
            pass

    with pytest.raises(RuntimeError, match="boom"):
        tiny_engine.generate([PROMPT], [{5: 1.0}], config=CFG, _streamer=Boom())
    assert hooks_on(tiny_engine) == 0
    assert raw_greedy(tiny_engine, PROMPT, 12) == tiny_engine.generate([PROMPT], config=CFG)[0].token_ids


def test_two_threads_steering_at_once_do_not_see_each_other(tiny_engine):
    cfg = GenerationConfig(max_new_tokens=24, repetition_penalty=1.0)
    weights = {"a": {5: 1.0}, "b": {9: -1.0}}
    alone = {k: tiny_engine.generate([PROMPT], [w], config=cfg)[0].token_ids for k, w in weights.items()}
    assert alone["a"] != alone["b"]

    # Slow every forward a little so the two generations certainly interleave.
    overlap = {"a": 0, "b": 0}
    active: set[str] = set()
    local = threading.local()

    def slow(_m, _i):
        import time

        if len(active) == 2:
            overlap[local.name] += 1
        time.sleep(0.002)

    if tiny_engine.fast is None:
        pre = tiny_engine.layers[0].register_forward_pre_hook(slow)
    else:  # the fast path calls no modules: slow its decoder blocks instead
        blocks = tiny_engine.fast._blocks

        def slow_blocks(*args):
            slow(None, None)
            return blocks(*args)

        tiny_engine.fast._blocks = slow_blocks
        pre = type("Undo", (), {"remove": lambda self: vars(tiny_engine.fast).pop("_blocks")})()
    barrier = threading.Barrier(2)
    results = {}

    def run(name):
        local.name = name
        barrier.wait()
        active.add(name)
        results[name] = tiny_engine.generate([PROMPT], [weights[name]], config=cfg)[0].token_ids
        active.discard(name)

    try:
        threads = [threading.Thread(target=run, args=(k,)) for k in weights]
        [t.start() for t in threads]
        [t.join() for t in threads]
    finally:
        pre.remove()
    assert overlap["a"] > 0 and overlap["b"] > 0, "the two generations did not overlap"
    assert results == alone
    assert hooks_on(tiny_engine) == 0


def test_a_character_cut_off_mid_bytes_is_dropped_not_shown_as_a_replacement_mark(tiny_engine):
    tok = tiny_engine.tokenizer
    ids = tok("ok é", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids[:-1]).endswith("\ufffd")  # the last byte of "é" is its own token here
    assert tiny_engine.text_of(ids[:-1]) == "ok" and tiny_engine.text_of(ids) == "ok é"


def test_stream_yields_growing_text_and_ends_with_the_full_answer(tiny_engine):
    steps = list(tiny_engine.stream([PROMPT, PROMPT], [{5: 1.0}, None], config=CFG))
    final = tiny_engine.generate([PROMPT, PROMPT], [{5: 1.0}, None], config=CFG)
    assert len(steps) > 3
    assert steps[-1] == [g.text for g in final]
    assert all(len(a[0]) <= len(b[0]) for a, b in zip(steps[:-2], steps[1:-1]))


def test_cancel_stops_generation_early(tiny_engine):
    cancel = threading.Event()
    cfg = GenerationConfig(max_new_tokens=200, repetition_penalty=1.0)
    seen = 0
    stream = tiny_engine.stream([PROMPT], [{5: 1.0}], config=cfg, cancel=cancel)
    for _ in stream:
        seen += 1
        if seen == 3:
            cancel.set()
    assert seen < 10
    assert hooks_on(tiny_engine) == 0


def test_cancelled_generation_reports_it(tiny_engine):
    cancel = threading.Event()
    cancel.set()
    [g] = tiny_engine.generate([PROMPT], [{5: 1.0}], config=GenerationConfig(max_new_tokens=50), cancel=cancel)
    assert g.finish_reason == "cancelled"
    assert len(g.token_ids) <= 1


def test_seeded_sampling_is_reproducible(tiny_engine):
    cfg = GenerationConfig(max_new_tokens=12, temperature=1.0, seed=7)
    a = tiny_engine.generate([PROMPT], config=cfg)[0].token_ids
    b = tiny_engine.generate([PROMPT], config=cfg)[0].token_ids
    c = tiny_engine.generate([PROMPT], config=GenerationConfig(max_new_tokens=12, temperature=1.0, seed=8))[0].token_ids
    assert a == b
    assert a != c


def test_mismatched_weights_and_prompts_is_an_error(tiny_engine):
    with pytest.raises(ValueError):
        tiny_engine.generate([PROMPT, PROMPT], [{5: 1.0}])


def test_engine_without_sae_refuses_weights(tiny_model, tiny_tokenizer):
    engine = SteeringEngine(tiny_model, tiny_tokenizer, basis=None)
    assert engine.generate([PROMPT], [None], config=CFG)[0].token_ids == raw_greedy(engine, PROMPT, 12)
    with pytest.raises(ValueError, match="no SAE"):
        engine.generate([PROMPT], [{1: 0.5}], config=CFG)


def test_a_free_vector_adds_scale_times_itself_and_changes_the_answer(tiny_engine):
    d = tiny_engine.basis.directions.shape[1]
    free = torch.zeros(d)
    free[3] = 0.5
    vec = tiny_engine.steering_vectors([Steer({7: 0.2}, free), Steer({7: 0.2}), Steer(free=free), None])
    assert torch.allclose(vec[0] - vec[1], tiny_engine.basis.scale * free)
    assert torch.allclose(vec[2], tiny_engine.basis.scale * free) and float(vec[3].abs().sum()) == 0
    assert bool(Steer(free=free)) and not bool(Steer())
    cfg = GenerationConfig(max_new_tokens=8, repetition_penalty=1.0)
    big = torch.randn(d)
    a, b = tiny_engine.generate(["Why is the sky blue?"] * 2, [Steer(free=big), None], config=cfg)
    assert a.token_ids != b.token_ids
    with pytest.raises(ValueError, match="hidden size"):
        tiny_engine.steering_vectors([Steer(free=torch.zeros(d + 1))])


def test_a_slow_stream_consumer_gets_the_steps_it_missed_at_once():
    from steering.runtime.reference import QueueStreamer

    s = QueueStreamer()
    s.put(torch.tensor([[7, 8]]))  # the prompt: not a step
    for tok in ([3, 4], [5, 6], [9, 2]):
        s.put(torch.tensor(tok))
    s.end()
    assert list(s.drained()) == [[[3, 4], [5, 6], [9, 2]]]
