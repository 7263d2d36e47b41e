"""Command line for the kids' Q&A: `python -m quora_kids answer|evaluate|batch|curate ...`.

Exit codes: 0 success, 2 bad input (one-line error on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from steering.cli.common import UsageError, non_negative_int, positive_int, run_main
from steering.paths import PROFILES_DIR

from .questions import QuestionSetError, load_questions, read_question_file

# The commands import the engine (torch, transformers) when they run, so that building the parser
# (--help, a bad option) stays instant.

DEFAULT_PROFILE = PROFILES_DIR / "kids.json"


def _profile(path: str | None):
    """The named profile; by default the shipped kids profile, or an all-zero one until it exists."""
    from steering.artefacts.bind import blank_profile
    from steering.artefacts.profile import load_profile
    from steering.runtime.shared import get_runtime

    from .profiles import KIDS_BEHAVIOUR

    if path:
        return load_profile(path)  # a ProfileError is bad input: run_main answers it with exit code 2
    if DEFAULT_PROFILE.is_file():
        return load_profile(DEFAULT_PROFILE)
    return blank_profile(get_runtime(), "unsteered", KIDS_BEHAVIOUR)


def _client(args):
    if getattr(args, "llm_base_url", None):
        from steering.llm import LLMClient

        return LLMClient.from_env(args.llm_base_url, args.llm_model)
    return None


def cmd_answer(args) -> int:
    from steering.runtime.shared import get_runtime

    from .service import AnswerService, clean_question, default_safety, refused_answer
    from .store import AnswerStore

    question = clean_question(args.question)  # QuestionError, ProfileError: bad input, exit code 2 (run_main)
    profile = _profile(args.profile)
    safety = default_safety(_client(args))
    verdict = safety.check(question, "question")  # a refused question needs no model
    if not verdict.ok:
        ans = refused_answer(question, profile.name, verdict)
    else:
        service = AnswerService(get_runtime(profile.model.preset), profile, safety,
                                None if args.no_store else AnswerStore(args.db), max_new_tokens=args.max_new_tokens)
        ans = service.answer(question, use_cache=not args.no_cache)
    if args.json:
        print(json.dumps(ans.to_json(), ensure_ascii=False))
        return 0
    if ans.refused:
        print(f"[refused: {ans.question_safety.reason}]\n{ans.steered.text}")
        return 0
    if ans.care:
        print(ans.care + "\n")
    for name, side in (("steered (" + ans.profile + ")", ans.steered), ("unsteered", ans.unsteered)):
        print(f"== {name} - grade {side.readability.grade:.1f}, {side.readability.badge}")
        print(side.text + "\n")
    return 0


def cmd_evaluate(args) -> int:
    questions = read_question_file(args.questions)  # a QuestionSetError is bad input: exit code 2
    if args.limit:
        questions = questions[: args.limit]
    from tqdm import tqdm

    from steering.runtime.shared import get_runtime

    from .evaluate import evaluate
    from .service import RETRIES, default_safety

    profile = _profile(args.profile)
    rt = get_runtime(profile.model.preset)
    with tqdm(total=len(questions), desc="evaluate", unit="q", file=sys.stderr, disable=args.json and not sys.stderr.isatty()) as bar:
        stats, outputs = evaluate(rt, profile, questions, default_safety(_client(args)), args.batch_size, args.max_new_tokens, bar.update)
    result = {"n": len(questions), "profile": profile.name, "conditions": {c: s.to_dict() for c, s in stats.items()}}
    if args.outputs:
        Path(args.outputs).write_text(json.dumps({"questions": questions, **outputs}, indent=1, ensure_ascii=False))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{len(questions)} questions, profile {profile.name!r}")
    print(f"{'condition':18s} {'grade':>6s} {'ease':>6s} {'relevance':>9s} {'perplexity':>10s} {'refusals':>8s} {'withheld*':>9s} {'shown**':>7s} {'loops':>5s}")
    for c, s in stats.items():
        print(f"{c:18s} {s.grade:6.2f} {s.ease:6.1f} {s.relevance:9.3f} {s.fluency:10.2f} {100 * s.refusal_rate:7.1f}% "
              f"{s.withheld_vs_unsteered:9d} {s.withheld_shown:7d} {s.degenerate:5d}")
    print("* withheld: answers refused where the unsteered answer to the same question was not")
    print("** shown: the same after the site's retries (a withheld answer is written again up to "
          f"{RETRIES} times): the fallback text, or the model declining, as a visitor would see it")
    return 0


def cmd_batch(args) -> int:
    from steering.llm import LLMClient, LLMError
    from steering.runtime.shared import get_runtime

    from .batch import batch_answer, dataset_for, local_generator, remote_generator
    from .service import default_safety

    try:
        src = Path(args.questions)
        if src.suffix == ".txt":
            ds = dataset_for(read_question_file(src))
        else:
            mapping = dict(m.split("=", 1) for m in args.column or [])
            ds = load_questions(args.questions, mapping)
    except (QuestionSetError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    if args.limit:
        ds = ds.select(range(min(args.limit, len(ds))))
    profile = _profile(args.profile)
    if args.remote_url:
        gen = remote_generator(LLMClient.from_env(args.remote_url, args.remote_model), args.max_new_tokens)
        source = f"remote:{args.remote_url}"
    else:
        gen = local_generator(get_runtime(profile.model.preset), profile, args.max_new_tokens)
        source = "local"
    try:
        result = batch_answer(ds, args.out, gen, profile.name, args.batch_size, default_safety(), source)
    except LLMError as exc:
        raise UsageError(f"{exc} (answers so far are kept; run the same command again to resume)") from exc
    print(json.dumps({"out": args.out, "answered": len(result)}))
    return 0


def cmd_curate(args) -> int:
    """A learned profile made a curated one for the site: a display name and one sentence for
    parents, optionally gentler (`--strength`), written where the site reads curated profiles."""
    from dataclasses import replace

    from steering.artefacts.profile import load_profile, scaled

    title, description = " ".join(args.display_name.split()), " ".join(args.description.split())
    if not title or not description:
        raise UsageError("--display-name and --description must not be empty")
    profile = load_profile(args.profile)  # a ProfileError is bad input: exit code 2 (run_main)
    if args.strength != 1.0:
        profile = scaled(profile, args.strength, f"weights, free direction and opening x{args.strength:g} those of the profile curated "
                                                 f"(curated for the kids' site; an earlier note may have scaled it already)")
    profile = replace(profile, name=args.name or profile.name)
    if args.mode:  # answer with the behaviour as a system prompt as well, or with steering alone
        profile = replace(profile, mode=args.mode, system_prompt=profile.behavior if args.mode == "prompted_steered" else "")
    out = profile.save(args.out, extra={"display_name": title, "description": description})
    print(json.dumps({"out": str(out), "name": profile.name, "display_name": title, "strength": args.strength}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m quora_kids", description="Kids' Q&A with a steered model")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--profile", default=None, help="steering profile (default: assets/profiles/kids.json)")
        sp.add_argument("--max-new-tokens", type=positive_int, default=120)
        sp.add_argument("--llm-base-url", default=None, help="OpenAI-compatible endpoint for the safety check")
        sp.add_argument("--llm-model", default=None)

    a = sub.add_parser("answer", help="answer one question: steered and unsteered, with reading level and safety")
    a.add_argument("--question", required=True)
    a.add_argument("--json", action="store_true")
    a.add_argument("--db", default=None, help="answer store (SQLite; default: $QUORA_KIDS_DB, else ~/.cache/sae-steering/quora_kids.sqlite3)")
    a.add_argument("--no-store", action="store_true")
    a.add_argument("--no-cache", action="store_true")
    common(a)
    a.set_defaults(func=cmd_answer)

    e = sub.add_parser("evaluate", help="grade, relevance, fluency, refusals: unsteered/prompted/steered/both")
    e.add_argument("--questions", required=True, help="text file (one per line) or JSONL with a 'question' field")
    e.add_argument("--json", action="store_true")
    e.add_argument("--batch-size", type=positive_int, default=8)
    e.add_argument("--limit", type=non_negative_int, default=0, help="answer only the first N questions (0: all)")
    e.add_argument("--outputs", default=None, help="also write every answer to this JSON file")
    common(e)
    e.set_defaults(func=cmd_evaluate, max_new_tokens=96)

    b = sub.add_parser("batch", help="answer a whole question set into Parquet (resumable)")
    b.add_argument("--questions", required=True, help="file (.txt/.jsonl/.csv/.parquet) or hub dataset id")
    b.add_argument("--column", action="append", help="column mapping, e.g. question=question1")
    b.add_argument("--out", required=True)
    b.add_argument("--batch-size", type=positive_int, default=8)
    b.add_argument("--limit", type=non_negative_int, default=0, help="answer only the first N questions (0: all)")
    b.add_argument("--remote-url", default=None, help="send generation to this OpenAI-compatible server instead")
    b.add_argument("--remote-model", default=None)
    common(b)
    b.set_defaults(func=cmd_batch, max_new_tokens=96)
    _add_curate(sub)
    return p


def _add_curate(sub) -> None:
    c = sub.add_parser("curate", help="make a learned profile a curated one for the site (display name, one sentence, strength)")
    c.add_argument("--profile", required=True, help="a profile `steering autosteer` saved")
    c.add_argument("--display-name", required=True, help="what parents see, e.g. \"Pirate storyteller\"")
    c.add_argument("--description", required=True, help="one sentence saying what the answers are like")
    c.add_argument("--strength", type=float, default=1.0, help="multiply the weights, free direction and opening by this (0-1]")
    c.add_argument("--name", default=None, help="the name the site and its API use (default: the profile's)")
    c.add_argument("--mode", choices=["steered", "prompted_steered"], default=None,
                   help="answering mode (default: the one the run's held-out check chose)")
    c.add_argument("--out", required=True, help="e.g. assets/profiles/NAME.json")
    c.set_defaults(func=cmd_curate)


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
