"""Train the default model's SAE offline with sae-lens: corpus -> tokens -> activations -> TopK SAE.

`python -m steering build-sae` runs every step; each step's output is cached under --work-dir so an
interrupted build continues. The exact arguments are written next to the weights.

On a CPU the language model's forward pass is the cost (about 500 tokens/s for all 30 layers of
SmolLM2-135M on 2 cores), so the residual stream is computed once, only up to the SAE's layer and in
bfloat16 (about 2,200 tokens/s), and stored as a float16 activation cache in sae-lens' format;
sae-lens' LanguageModelSAETrainingRunner then trains from that cache (`use_cached_activations`),
for as many passes over it as `training_tokens` asks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .activations import layer_output, special_ids

log = logging.getLogger(__name__)


@dataclass
class SAEBuildConfig:
    preset: str = "smollm2-135m"
    layer: int = 15
    d_sae: int = 4096  # ~7x the 576-wide residual stream
    k: int = 64  # TopK: active latents per token (1.6% of d_sae)
    context_size: int = 128
    training_tokens: int = 4_000_000  # a bit more than the corpus: ~1.25 passes over the cache
    train_batch_size_tokens: int = 4096
    lr: float = 5e-4
    # Steps a latent may stay silent before the TopK auxiliary loss starts reviving it. Must be far
    # below the number of training steps, or the revival never starts (sae-lens default: 1000).
    dead_feature_window: int = 50
    # Scale activations to mean norm sqrt(d_in) while training (folded into the weights at the end).
    normalize_activations: str = "expected_average_only_in"
    seed: int = 42
    self_answers: int = 2380  # model answers generated for the corpus (the next 120 seed questions are held out)
    self_answer_tokens: int = 64
    chat_fraction: float = 0.5  # of WordNet glosses and fortunes, wrapped in the chat template
    wordnet_docs: int = 45_000  # sample of the 117,659 glosses (keeps the corpus ~3.5M tokens)
    cache_dtype: str = "bfloat16"  # dtype of the forward pass that fills the activation cache
    out_dir: str = "assets/sae/smollm2-135m-l15-topk"
    work_dir: str = "runs/sae"
    # Export a checkpoint of a run (runs/sae/checkpoints/RUN/N, e.g. one written by Ctrl-C)
    # instead of training, to ship weights from a run cut short.
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


SINK_NORM_RATIO = 4.0


def mark_sinks(acts: torch.Tensor, token_ids: torch.Tensor, bos_id: int, ratio: float = SINK_NORM_RATIO) -> torch.Tensor:
    """`token_ids` with attention-sink positions replaced by BOS, so training skips them like BOS.

    The token right after BOS often carries a "massive activation" (norm 14,000-25,000 against a
    median of ~170 in SmolLM2's layer 15): ~0.1% of positions holding ~88% of the variance, which
    would dominate the SAE's squared-error loss. A position counts as a sink when its norm is over
    `ratio` times the median norm of the (non-BOS) positions in the same block.
    """
    norms = acts.float().norm(dim=-1)
    median = norms[token_ids != bos_id].median()
    return torch.where(norms > ratio * median, torch.full_like(token_ids, bos_id), token_ids)


def cache_activations(
    model, dataset, layer: int, hook_name: str, out: Path, bos_id: int, rows_per_shard: int = 512, batch_rows: int = 16,
    progress: bool = True,
) -> Path:
    """The residual stream after `layer` for every row of `dataset`, as a sae-lens activation cache.

    Written in shards of `rows_per_shard` rows (an interrupted run resumes at the next missing
    shard), then consolidated into one `datasets` folder with columns `hook_name`
    (context x d_model, float16) and `token_ids` - the layout `use_cached_activations` reads.
    `token_ids` is only used to filter what training sees: sink positions are written as BOS
    (see `mark_sinks`).
    """
    from datasets import Array2D, Dataset, Features, Sequence, Value
    from sae_lens.cache_activations_runner import CacheActivationsRunner
    from tqdm import tqdm

    final = out / "dataset"
    if (final / "state.json").is_file():
        return final
    shards = out / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    n_rows, ctx = len(dataset), len(dataset[0]["input_ids"])
    features = Features(
        {
            hook_name: Array2D(shape=(ctx, model.config.hidden_size), dtype="float16"),
            "token_ids": Sequence(Value("int32"), length=ctx),
        }
    )
    n_shards = math.ceil(n_rows / rows_per_shard)
    with tqdm(total=n_rows * ctx, unit="tok", unit_scale=True, desc="activations", disable=not progress) as bar:
        for i in range(n_shards):
            lo, hi = i * rows_per_shard, min(n_rows, (i + 1) * rows_per_shard)
            shard = shards / f"shard_{i:05d}"
            if (shard / "state.json").is_file():
                bar.update((hi - lo) * ctx)
                continue
            ids = torch.tensor(dataset[lo:hi]["input_ids"], dtype=torch.long, device=model.device)
            acts = np.empty((hi - lo, ctx, model.config.hidden_size), dtype=np.float16)
            for b in range(0, hi - lo, batch_rows):
                x = ids[b : b + batch_rows]
                h = layer_output(model, layer, x, torch.ones_like(x)).float()
                acts[b : b + len(x)] = h.clamp(-65000, 65000).to(torch.float16).cpu().numpy()
                bar.update(x.numel())
            token_ids = mark_sinks(torch.from_numpy(acts), ids.cpu(), bos_id)
            tmp = shards / f"tmp_{i:05d}"
            shutil.rmtree(tmp, ignore_errors=True)
            Dataset.from_dict({hook_name: acts, "token_ids": token_ids.int().numpy()}, features=features).save_to_disk(str(tmp))
            tmp.rename(shard)
    final.mkdir(parents=True, exist_ok=True)
    CacheActivationsRunner._consolidate_shards(shards, final, copy_files=False)
    return final


def _cache_key(cfg: SAEBuildConfig, n_rows: int) -> str:
    keys = (cfg.preset, cfg.layer, cfg.context_size, cfg.seed, cfg.self_answers, cfg.chat_fraction, cfg.wordnet_docs, cfg.cache_dtype, n_rows)
    return hashlib.sha1(repr(keys).encode()).hexdigest()[:10]


def build_sae(cfg: SAEBuildConfig, progress: bool = True) -> Path:
    """Run every step and save a sae-lens inference folder at cfg.out_dir."""
    from .corpus import build_texts
    from .models import load_model, resolve_preset

    torch.manual_seed(cfg.seed)
    work = Path(cfg.work_dir)
    answers = generate_self_answers(cfg, work / "self_answers.jsonl", progress)
    preset = resolve_preset(cfg.preset)
    # One copy of the model, in the cache's dtype: it fills the activation cache, and afterwards the
    # trainer only reads the tokenizer through it (training runs from the cache).
    model, tok = load_model(preset)
    model.to(getattr(torch, cfg.cache_dtype))
    texts, stats = build_texts(tok, cfg.seed, answers, chat_fraction=cfg.chat_fraction, wordnet_docs=cfg.wordnet_docs)
    ds = token_dataset(tok, texts, cfg.context_size)
    corpus_tokens = len(ds) * cfg.context_size
    log.info("corpus: %s rows, %s tokens; %s", len(ds), corpus_tokens, stats)
    if cfg.from_checkpoint:
        return _export_checkpoint(Path(cfg.from_checkpoint), cfg, stats, corpus_tokens)
    # sae-lens hook names are module paths of the wrapped HF model.
    hook = f"model.layers.{cfg.layer}"
    t0 = time.perf_counter()
    cache = cache_activations(
        model, ds, cfg.layer, hook, work / "activations" / _cache_key(cfg, len(ds)), bos_id=tok.bos_token_id, progress=progress
    )
    cache_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    sae = train_from_cache(cfg, model, tok, ds, cache, preset.hub_id, progress)
    seconds = {"activation_cache": round(cache_seconds, 1), "training": round(time.perf_counter() - t1, 1)}
    return _save(sae, cfg, stats, corpus_tokens, seconds, cfg.training_tokens)


def train_from_cache(cfg: SAEBuildConfig, model, tokenizer, dataset, cache: Path, model_name: str, progress: bool = True):
    """sae-lens' LanguageModelSAETrainingRunner over an activation cache; returns the trained SAE."""
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens.load_model import HookedProxyLM
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    hook = f"model.layers.{cfg.layer}"
    proxy = HookedProxyLM(model, tokenizer, hook_names=[hook])  # supplies the tokenizer (special tokens)
    total_steps = max(1, cfg.training_tokens // cfg.train_batch_size_tokens)
    runner_cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(
            d_in=model.config.hidden_size,
            d_sae=cfg.d_sae,
            k=cfg.k,
            normalize_activations=cfg.normalize_activations,
            dtype="float32",
            device="cpu",
        ),
        model_name=model_name,
        model_class_name="AutoModelForCausalLM",
        hook_name=hook,
        dataset_path="local",
        is_dataset_tokenized=True,
        streaming=False,
        use_cached_activations=True,
        cached_activations_path=str(cache),
        context_size=cfg.context_size,
        prepend_bos=True,
        exclude_special_tokens=True,  # BOS (huge norm), <|im_start|>/<|im_end|>, padding
        training_tokens=cfg.training_tokens,
        train_batch_size_tokens=cfg.train_batch_size_tokens,
        store_batch_size_prompts=min(32, len(dataset)),
        n_batches_in_buffer=256,  # sae-lens: buffer = this x context_size tokens
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
        checkpoint_path=str(Path(cfg.work_dir) / "checkpoints"),
        n_checkpoints=4,
        output_path=str(Path(cfg.work_dir) / "final"),
        verbose=progress,
    )
    runner = LanguageModelSAETrainingRunner(runner_cfg, override_dataset=dataset, override_model=proxy)
    if cfg.normalize_activations in ("none", "expected_average_only_in"):
        with torch.no_grad():
            runner.sae.b_dec.copy_(_mean_init(cache, hook, tokenizer, cfg.normalize_activations != "none"))
    return runner.run()


def _mean_init(cache: Path, hook: str, tokenizer, normalized: bool, rows: int = 256) -> torch.Tensor:
    """Initial decoder bias: the mean activation (in the trainer's normalised units).

    sae-lens starts b_dec at zero. SmolLM2's residual stream has a large common offset (mean norm
    ~130 against a typical norm of ~170), so from zero the encoder sees mostly that offset and about
    half the latents (those pointing away from it) never reach the top k and die. Subtracting the
    mean from the start keeps them alive.
    """
    import datasets

    block = datasets.load_from_disk(str(cache)).with_format("torch")[:rows]
    x = block[hook].float().reshape(-1, block[hook].shape[-1])
    x = x[~torch.isin(block["token_ids"].reshape(-1).long(), special_ids(tokenizer))]
    mean = x.mean(0)
    if normalized:  # same factor as sae-lens' "expected_average_only_in": mean norm -> sqrt(d_in)
        mean = mean * (x.shape[1] ** 0.5) / x.norm(dim=-1).mean()
    return mean


def _export_checkpoint(ckpt: Path, cfg: SAEBuildConfig, stats, corpus_tokens: int) -> Path:
    """Save a training checkpoint as the inference SAE, folding in its activation scaling."""
    from sae_lens import TrainingSAE

    sae = TrainingSAE.load_from_disk(str(ckpt), "cpu")
    scaler = ckpt / "activation_scaler.json"
    factor = json.loads(scaler.read_text()).get("scaling_factor") if scaler.is_file() else None
    if factor is not None:
        sae.fold_activation_norm_scaling_factor(factor)
    return _save(sae, cfg, stats, corpus_tokens, seconds=None, trained_tokens=int(ckpt.name))


def _save(sae, cfg: SAEBuildConfig, stats, corpus_tokens: int, seconds: dict | None, trained_tokens: int) -> Path:
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
        "seconds": seconds,
        "torch": torch.__version__,
    }
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return out
