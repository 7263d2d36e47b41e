"""Guided decoding: each token maximises log p(told) + (scale - 1) * [log p(told) - log p(neutral)]."""

import threading

import torch

from steering.runtime.engine import GenerationConfig
from steering.runtime.guided import guided_generate

PROMPTS = ["Why is the sky blue?", "What is a cat and why do people keep them?"]


def _next_scores(engine, prompt, system, answer):
    ids = engine.tokenizer(engine.chat_prompt(prompt, system), add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([ids, torch.tensor([answer], dtype=torch.long).reshape(1, -1)], 1)
    with torch.no_grad():
        logits = engine.model(input_ids=ids).logits[0, -1].float()
    seen = ids[0].unique()
    picked = logits[seen]
    logits[seen] = torch.where(picked > 0, picked / 1.1, picked * 1.1)  # the repetition penalty
    return torch.log_softmax(logits, -1)


def test_scale_one_is_the_plain_told_answer(tiny_runtime):
    eng = tiny_runtime.engine
    told = eng.generate(PROMPTS, system="Talk like a pirate", config=GenerationConfig(max_new_tokens=8))
    (guided,) = guided_generate(eng, PROMPTS, "Talk like a pirate", "Answer the question.", [1.0], max_new_tokens=8)
    assert guided == [g.token_ids for g in told]


def test_each_token_is_the_guided_argmax_and_padding_changes_nothing(tiny_runtime):
    eng = tiny_runtime.engine
    scale = 4.0
    both = guided_generate(eng, PROMPTS, "Talk like a pirate", "Answer the question.", [1.0, scale], max_new_tokens=5)
    alone = guided_generate(eng, PROMPTS[1:], "Talk like a pirate", "Answer the question.", [scale], max_new_tokens=5)
    assert both[1][1] == alone[0][0]  # the short prompt's padding does not change the long one's answer
    for prompt, answer in zip(PROMPTS, both[1]):
        for t in range(len(answer)):  # recomputed unbatched, from two separate forwards
            told = _next_scores(eng, prompt, "Talk like a pirate", answer[:t])
            neutral = _next_scores(eng, prompt, "Answer the question.", answer[:t])
            assert answer[t] == int((neutral + scale * (told - neutral)).argmax())
    assert both[0] != both[1]  # on the random model, guidance changes the answers


def test_a_cancelled_run_stops_before_the_first_step(tiny_runtime):
    stop = threading.Event()
    stop.set()
    assert guided_generate(tiny_runtime.engine, PROMPTS, "Be polite", None, [2.0], cancel=stop) == [[[], []]]
    assert guided_generate(tiny_runtime.engine, [], "Be polite", None, [2.0, 3.0]) == [[], []]
