"""The benchmarks measure an LLM judge the way they measure the metric one: `bench_judge.py
--judge llm` against the reader's labels, `bench_autosteer.py --rejudge F --judge llm` on saved
answers. A real HTTP exchange with a local OpenAI-compatible server; the fallback judge runs on the
tiny model."""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_autosteer  # noqa: E402
import bench_judge  # noqa: E402


def _asked(body) -> tuple[str, str]:
    """(behaviour, the one answer) of a single-answer judge request."""
    content = body["messages"][0]["content"]
    behavior = re.search(r'The behaviour asked for: "(.*?)"\.', content).group(1)
    return behavior, content.split("\nAnswer 1: ", 1)[1]


def test_bench_judge_measures_an_llm_judge_against_the_reader(fake_openai, llm_client, tiny_runtime):
    rows = bench_judge.load("test")
    hand = {(r["behavior"], r["answer"] or "(empty)"): r["score"] for r in rows}
    unscorable = rows[5]

    def reply(body):
        key = _asked(body)
        if key == (unscorable["behavior"], unscorable["answer"]):
            return "I cannot tell."  # off-format, twice: the metric judge scores this one
        return f"Answer 1: overall {hand[key]}\nScore: {hand[key]}"

    fake_openai.default = reply
    agreeing = bench_judge.measure(tiny_runtime.engine, "test", "llm", llm_client)
    assert agreeing["judge"].startswith("llm") and agreeing["n"] == len(rows) and agreeing["fallbacks"] == 1
    assert agreeing["parts"] == {}  # an LLM judge reports no parts to compare
    assert agreeing["spearman"] > 0.95  # the reader's own scores, but one
    fake_openai.default = lambda body: f"Score: {10 - hand[_asked(body)]}"
    assert bench_judge.measure(tiny_runtime.engine, "test", "llm", llm_client)["spearman"] < -0.95


def test_bench_autosteer_rejudges_saved_answers_with_an_llm_judge(fake_openai, llm_client, tiny_runtime, tmp_path):
    prompts = ["Why is the sky blue?", "How do I make a friend?"]
    outputs = {"unsteered": ["Light scatters.", "Say hello."], "prompted": ["Light scatters, woof.", "Say hello."],
               "steered": ["Woof! Light scatters.", "Woof! Sniff them."], "prompted_steered": ["Woof.", "Woof woof."]}
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps({"dog": {"behavior": "Behave like a dog", "held_out_prompts": prompts, "held_out_outputs": outputs,
                                         "held_out": {c: 0.0 for c in outputs}}}))
    fake_openai.default = lambda body: (f"Answer 1: overall {2 * len(re.findall('oof', body['messages'][0]['content']))}\n"
                                        f"Answer 2: overall 1\nScore: {len(re.findall('oof', body['messages'][0]['content']))}")
    (r,) = bench_autosteer.rejudge(str(saved), "llm", llm_client, tiny_runtime.engine).values()
    assert r["held_out"] == {"unsteered": 0, "prompted": 1, "steered": 2, "prompted_steered": 3}
    assert r["held_out_per_prompt"]["steered"] == [4.0, 1.0]
    # each condition's answers went to the endpoint, both questions in one request
    assert len(fake_openai.requests) == 4 and all("Question 2: How do I make a friend?" in q["body"]["messages"][0]["content"]
                                                  for q in fake_openai.requests)
