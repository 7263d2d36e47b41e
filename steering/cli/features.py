"""`features search|show|import-neuronpedia` (the feature index) and `build-index`."""

from __future__ import annotations

import dataclasses
import json
from contextlib import ExitStack

from tqdm import tqdm

from .common import UsageError

# The commands import the engine (torch, transformers) when they run, so that building the parser
# (--help, a bad option) stays instant.


def add_features(sub):
    p = sub.add_parser("features", help="search or show SAE features (latents) by their labels")
    fsub = p.add_subparsers(dest="features_command", required=True)
    s = fsub.add_parser("search", help="latents whose label matches a description")
    s.add_argument("query")
    s.add_argument("--k", "-k", "--top", dest="k", type=int, default=10, help="how many features to list")
    s.add_argument("--preset", default=None)
    s.add_argument("--contexts", type=int, default=0, help="also print N top-activating contexts per hit")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_features_search)
    sh = fsub.add_parser("show", help="everything the index knows about one latent")
    sh.add_argument("index", type=int)
    sh.add_argument("--preset", default=None)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_features_show)
    imp = fsub.add_parser("import-neuronpedia", help="make a preset's index from a Neuronpedia explanations export")
    imp.add_argument("file")
    imp.add_argument("--preset", required=True)
    imp.add_argument("--d-sae", type=int, required=True)
    imp.set_defaults(func=cmd_features_import)


def _load_index(preset_name):
    from ..runtime.models import index_dir, resolve_preset
    from ..sae.index import FeatureIndex

    try:
        return FeatureIndex.load(index_dir(resolve_preset(preset_name)))
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc


def cmd_features_search(args) -> int:
    if not args.query.strip():
        raise UsageError("the search query is empty")
    if not 1 <= args.k <= 1000:
        raise UsageError("--k must be between 1 and 1000")
    index = _load_index(args.preset)
    hits = index.search_words(args.query, k=args.k)
    if args.json:
        print(json.dumps([{"index": h.index, "label": h.label, "score": round(h.score, 4), "mentions": list(h.mentions)} for h in hits]))
        return 0
    if not any(h.mentions for h in hits):
        print(f"(no label among these mentions a word of {args.query!r}: the nearest by meaning, which may be unrelated)")
    for h in hits:
        print(f"{h.index:6d}  {h.score:.3f}  {h.label}" + (f"  [mentions: {', '.join(h.mentions)}]" if h.mentions else ""))
        for c in index.get(h.index).contexts[: args.contexts]:
            print(f"        | {c}")
    return 0


def cmd_features_show(args) -> int:
    index = _load_index(args.preset)
    try:
        rec = index.get(args.index)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from exc
    if args.json:
        print(json.dumps(dataclasses.asdict(rec), ensure_ascii=False))
        return 0
    print(f"latent {rec.index}: {rec.label}  [{rec.source}]")
    print(f"  max activation {rec.max_activation:.2f}, active on {100 * rec.frequency:.3f}% of tokens")
    print(f"  promotes:   {' | '.join(rec.promoted)}")
    print(f"  suppresses: {' | '.join(rec.suppressed)}")
    for c in rec.contexts:
        print(f"  | {c}")
    return 0


def cmd_features_import(args) -> int:
    from ..runtime.models import index_dir, resolve_preset
    from ..sae.index import import_neuronpedia

    preset = resolve_preset(args.preset)
    try:
        index = import_neuronpedia(args.file, args.d_sae, {"preset": preset.id, "sae": preset.sae.ident})
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(index.save(index_dir(preset)))
    return 0


def add_build_index(sub):
    p = sub.add_parser("build-index", help="build the feature index (evidence, labels, embeddings) for a preset's SAE")
    p.add_argument("--preset", default=None)
    p.add_argument("--per-source", type=int, default=1500, help="documents sampled from each corpus source")
    p.add_argument("--self-answers", default="runs/sae/self_answers.jsonl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--llm-labels", action="store_true", help="label latents with the configured OpenAI-compatible endpoint")
    p.set_defaults(func=cmd_build_index)


def cmd_build_index(args) -> int:
    from ..llm import LLMClient, explain_feature
    from ..runtime.models import resolve_preset
    from ..sae.labels import build_preset_index

    labeller = None
    if args.llm_labels:
        client = LLMClient.from_env()
        labeller = lambda rec: explain_feature(client, rec)  # noqa: E731
    with ExitStack() as stack:
        def bar(total: int):
            return stack.enter_context(tqdm(total=total, desc="index", unit="doc")).update

        path = build_preset_index(resolve_preset(args.preset), args.per_source, args.self_answers, args.seed, labeller, bar)
    print(path)
    return 0
