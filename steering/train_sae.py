"""Train the default model's SAE offline with sae-lens: corpus -> tokens -> TopK SAE on disk.

`python -m steering build-sae` runs every step; each step's output is cached under --work so an
interrupted build continues. The exact arguments are written next to the weights.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@dataclass
class SAEBuildConfig:
    preset: str = "smollm2-135m"
    layer: int = 15
    d_sae: int = 4608  # 8x the 576-wide residual stream
    k: int = 32  # TopK: active latents per token
    context_size: int = 128
    training_tokens: int = 4_000_000
    train_batch_size_tokens: int = 4096
    lr: float = 5e-4
    # Steps a latent may stay silent before the TopK auxiliary loss starts reviving it. Must be far
    # below the number of training steps, or the revival never starts (sae-lens default: 1000).
    dead_feature_window: int = 50
    seed: int = 42
    self_answers: int = 1500  # model answers generated for the corpus
    self_answer_tokens: int = 64
    out_dir: str = "assets/sae/smollm2-135m-l15-topk"
    work_dir: str = "runs/sae"
    # Export a checkpoint of this run (runs/sae/checkpoints/RUN/N, e.g. one written by Ctrl-C)
    # instead of training: how the shipped weights were cut short to fit a session.
    from_checkpoint: str = ""


def generate_self_answers(cfg: SAEBuildConfig, path: Path, progress=True) -> list[dict]:
    """The model's own answers to seed questions under varied system prompts (cached as JSONL)."""
    from tqdm import tqdm

    from .corpus import STYLE_PROMPTS, seed_questions
    from .engine import GenerationConfig, SteeringEngine
    from .models import load_model, resolve_preset

    done = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    if len(done) >= cfg.self_answers:
        return done[: cfg.self_answers]
    model, tok = load_model(resolve_preset(cfg.preset))
    engine = SteeringEngine(model, tok, basis=None)
    rng = random.Random(cfg.seed)
    questions = seed_questions(cfg.seed)[: cfg.self_answers]
    batch = 48
    gen = GenerationConfig(max_new_tokens=cfg.self_answer_tokens, temperature=0.8, seed=cfg.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh, tqdm(total=len(questions), initial=len(done), desc="self-answers", disable=not progress) as bar:
        for start in range(len(done), len(questions), batch):
            qs = questions[start : start + batch]
            systems = [rng.choice(STYLE_PROMPTS) for _ in qs]
            outs = engine.generate(qs, system=systems, config=gen)
            for q, s, g in zip(qs, systems, outs):
                rec = {"question": q, "system": s, "answer": g.text}
                fh.write(json.dumps(rec) + "\n")
                done.append(rec)
            fh.flush()
            bar.update(len(qs))
    return done


def token_dataset(tokenizer, texts: list[str], context_size: int):
    """Pack documents into rows of `context_size` tokens, each row starting with BOS."""
    from datasets import Dataset

    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    stream: list[int] = []
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream.extend(enc + [eos])
    body = context_size - 1
    rows = [[bos] + stream[i : i + body] for i in range(0, len(stream) - body + 1, body)]
    return Dataset.from_dict({"input_ids": rows})


def build_sae(cfg: SAEBuildConfig, progress: bool = True) -> Path:
    """Run every step and save a sae-lens inference folder at cfg.out_dir."""
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens.load_model import HookedProxyLM
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    from .corpus import build_texts
    from .models import load_model, resolve_preset

    torch.manual_seed(cfg.seed)
    work = Path(cfg.work_dir)
    answers = generate_self_answers(cfg, work / "self_answers.jsonl", progress)
    preset = resolve_preset(cfg.preset)
    model, tok = load_model(preset)
    texts, stats = build_texts(tok, cfg.seed, answers)
    ds = token_dataset(tok, texts, cfg.context_size)
    corpus_tokens = len(ds) * cfg.context_size
    log.info("corpus: %s rows, %s tokens; %s", len(ds), corpus_tokens, stats)
    if cfg.from_checkpoint:
        from sae_lens import TrainingSAE

        ckpt = Path(cfg.from_checkpoint)
        sae = TrainingSAE.load_from_disk(str(ckpt), "cpu")
        return _save(sae, cfg, stats, corpus_tokens, seconds=None, trained_tokens=int(ckpt.name))
    # sae-lens hook names are module paths of the wrapped HF model.
    hook = f"model.layers.{cfg.layer}"
    proxy = HookedProxyLM(model, tok, hook_names=[hook])
    total_steps = cfg.training_tokens // cfg.train_batch_size_tokens
    runner_cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=model.config.hidden_size, d_sae=cfg.d_sae, k=cfg.k, dtype="float32", device="cpu"),
        model_name=preset.hub_id,
        model_class_name="AutoModelForCausalLM",
        hook_name=hook,
        dataset_path="local",
        is_dataset_tokenized=True,
        streaming=False,
        context_size=cfg.context_size,
        prepend_bos=True,
        exclude_special_tokens=True,  # BOS (huge norm), <|im_start|>/<|im_end|>, padding
        training_tokens=cfg.training_tokens,
        train_batch_size_tokens=cfg.train_batch_size_tokens,
        store_batch_size_prompts=16,
        n_batches_in_buffer=128,  # sae-lens: buffer = this x context_size tokens
        lr=cfg.lr,
        lr_warm_up_steps=max(1, total_steps // 50),
        dead_feature_window=cfg.dead_feature_window,
        feature_sampling_window=max(cfg.dead_feature_window, 100),
        lr_decay_steps=total_steps // 5,
        seed=cfg.seed,
        device="cpu",
        n_eval_batches=4,
        eval_batch_size_prompts=8,
        n_batches_for_norm_estimate=50,
        logger=LoggingConfig(log_to_wandb=False),
        checkpoint_path=str(work / "checkpoints"),
        n_checkpoints=4,
        output_path=str(work / "final"),
        verbose=progress,
    )
    t0 = time.perf_counter()
    runner = LanguageModelSAETrainingRunner(runner_cfg, override_dataset=ds, override_model=proxy)
    sae = runner.run()
    return _save(sae, cfg, stats, corpus_tokens, time.perf_counter() - t0, cfg.training_tokens)


def _save(sae, cfg: SAEBuildConfig, stats, corpus_tokens: int, seconds: float | None, trained_tokens: int) -> Path:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sae.save_inference_model(str(out))
    args = {k: v for k, v in asdict(cfg).items() if k != "from_checkpoint"}
    recipe = {
        "build_config": asdict(cfg),
        "trained_tokens": trained_tokens,
        "command": "python -m steering build-sae " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in args.items()),
        "corpus": [asdict(s) for s in stats],
        "corpus_tokens": corpus_tokens,
        "training_seconds": round(seconds, 1) if seconds is not None else None,
        "torch": torch.__version__,
    }
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return out
