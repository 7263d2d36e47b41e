"""The kids' site under load: a real app server, real HTTP clients (gradio_client).

    python benchmarks/bench_load.py [--clients 8] [--questions-per-client 3] [--no-autosteer] [--optimizer gradient|numeric] [--json]
    python benchmarks/bench_load.py --in-process [--second-team]   # the answer service alone

1. Idle: questions asked one at a time: time to the first visible words of the streamed answers
   (target <= 2 s) and to the finished, checked pair.
2. Load: `--clients` kids' clients ask questions back to back while one auto-steer run (6 epochs,
   the app's default optimiser unless `--optimizer`) works in the background. Prints p50/p95 time to a finished kids' answer, its ratio to the idle
   median (target p95 <= 3x), answers per minute, and failed requests (target 0).
3. The decode floor: `--clients` kids' pairs decoded together, one step timed at mid-answer, times
   the answer length. No loaded answer can finish sooner; `floor_over_idle` is the best ratio the
   cores allow (see decode_floor).

Every question is distinct and the answer database starts empty, so nothing is served from cache.
`--in-process` asks the kids' answer service directly from threads (no web server, no HTTP
clients, no auto-steer); `--second-team` first runs a torch op on the main thread, which gives
the process a second OpenMP thread team, as loading the model there used to (docs/decoding.md).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from app_server import AppServer  # noqa: E402

PROFILE = "kids"


def questions() -> list[str]:
    qs = [q.strip() for q in (ROOT / "assets/questions/eval_questions.txt").read_text().splitlines() if q.strip()]
    for line in (ROOT / "assets/questions/kids_questions.jsonl").read_text().splitlines():
        q = json.loads(line).get("question", "").strip()
        if q and q not in qs:
            qs.append(q)
    return qs


def card_text(html: str) -> str:
    m = re.search(r"<p>(.*?)</p>", html or "", re.S)
    return m.group(1).strip() if m else ""


def ask(client, question: str) -> dict:
    """One streamed kids' answer: seconds to the first words and to the finished pair."""
    t0 = time.perf_counter()
    first = None
    job = client.submit(question, PROFILE, api_name="/kids_answer")
    for out in job:
        if first is None and (card_text(out[0]) or card_text(out[1])):
            first = time.perf_counter() - t0
    steered, plain, notice, *_ = job.result()
    done = time.perf_counter() - t0
    ok = bool(card_text(steered)) and "⚠️" not in (notice or "")
    return {"question": question, "first_words_s": first if first is not None else done, "done_s": done, "ok": ok}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run_load(url: str, qs: list[str], clients: int, per_client: int, autosteer: bool, optimiser: str = "gradient") -> dict:
    from gradio_client import Client

    results, errors = [], []
    lock = threading.Lock()
    auto = {}

    def kid(i: int):
        c = Client(url, verbose=False)
        for q in qs[i * per_client:(i + 1) * per_client]:
            try:
                r = {"started_s": round(time.perf_counter() - t0, 1)} | ask(c, q)  # (the left side is evaluated first)
            except Exception as exc:  # counted, not raised: the figure is how many fail
                with lock:
                    errors.append(f"{q}: {exc}")
                continue
            with lock:
                (results if r["ok"] else errors).append(r if r["ok"] else f"{q}: not answered")

    def steer():
        c = Client(url, verbose=False)
        t = time.perf_counter()
        job = c.submit("Behave like a dog", "What is your favourite food?\nHow was your day?\nTell me about your family.",
                       6, 6, "metric", optimiser, "", "", "", 10, api_name="/autosteer")
        job.result()
        auto["seconds"] = time.perf_counter() - t

    bg = threading.Thread(target=steer) if autosteer else None
    if bg:
        bg.start()
        time.sleep(20)  # let it reach the epochs (retrieval and screening come first)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=kid, args=(i,)) for i in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - t0
    if bg:
        bg.join()
    done = [r["done_s"] for r in results]
    return {
        "answers": len(results),
        "failed": len(errors),
        "errors": errors[:5],
        "p50_done_s": round(statistics.median(done), 2) if done else None,
        "p95_done_s": round(pct(done, 0.95), 2) if done else None,
        "p50_first_words_s": round(statistics.median(r["first_words_s"] for r in results), 2) if results else None,
        "answers_per_min": round(60 * len(results) / wall, 1),
        "autosteer_s": round(auto.get("seconds", 0), 1) if autosteer else None,
        "slowest": slowest(results),
    }


def slowest(results: list[dict], n: int = 3) -> list[dict]:
    """The stragglers that set p95, with when each was asked (seconds after the kids started; the
    auto-steer run started 20 s before them). A withheld answer is generated again, which can
    double its time (session 10: "Why do I burp after drinking juice?", 28.5 s against a 15 s p50)."""
    return [{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items() if k != "ok"}
            for r in sorted(results, key=lambda r: -r["done_s"])[:n]]


def decode_floor(rt, qs: list[str], clients: int, idle_s: float, tokens: int = 120) -> dict:
    """The least time `clients` kids' pairs asked together can take: `tokens` decode steps of all
    their rows at once, each step timed at mid-answer (kids' profile, its system prompt, on the
    compute worker). No scheduler, check or prompt run can make a loaded answer faster than this,
    so `floor_over_idle` (against the idle pair's `idle_s`) is the best p50 / idle ratio these
    cores allow."""
    from quora_kids.profiles import load_curated
    from steering.artefacts.bind import system_for, weights_for
    from steering.runtime.engine import GenerationConfig
    from steering.runtime.scheduler import on_compute_thread

    engine, prof = rt.engine, load_curated()[PROFILE].profile
    w, system = weights_for(prof, engine), system_for(prof)
    cfg = GenerationConfig(max_new_tokens=tokens, min_new_tokens=tokens)

    def per_step(n: int) -> float:
        flights = [engine._begin([q, q], [w, None], [system, None], cfg, None, None) for q in qs[:n]]
        for _ in range(tokens // 2 - 10):  # to mid-answer: attention reads the average cache length
            engine.fast.step(flights)
        t0 = time.perf_counter()
        for _ in range(20):
            engine.fast.step(flights)
        return (time.perf_counter() - t0) / 20

    if engine.fast is None:
        return {"floor_over_idle": None}
    loaded, alone = on_compute_thread(per_step, clients), on_compute_thread(per_step, 1)
    return {"floor_step_ms": round(1e3 * loaded, 1), "floor_step_ms_one_pair": round(1e3 * alone, 1),
            "floor_decode_s": round(tokens * loaded, 2), "floor_over_idle": round(tokens * loaded / idle_s, 2)}


def run_in_process(qs: list[str], clients: int, per_client: int, idle_n: int, second_team: bool) -> dict:
    from quora_kids.profiles import load_curated
    from quora_kids.service import AnswerService, default_safety
    from steering.runtime.scheduler import INTERACTIVE, iterate_at
    from steering.runtime.shared import get_runtime

    rt = get_runtime()
    if second_team:
        import torch

        torch.randn(1000, 1000) @ torch.randn(1000, 1000)
    svc = AnswerService(rt, load_curated()[PROFILE].profile, default_safety(), None)

    def timed(q: str) -> float:
        t = time.perf_counter()
        for _ in iterate_at(INTERACTIVE, svc.stream(q)):
            pass
        return time.perf_counter() - t

    timed("What is a warm-up question?")
    idle = [timed(q) for q in qs[:idle_n]]
    done, lock = [], threading.Lock()

    def kid(i: int):
        for q in qs[idle_n + i * per_client: idle_n + (i + 1) * per_client]:
            s = timed(q)
            with lock:
                done.append(s)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=kid, args=(i,)) for i in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - t0
    return {**decode_floor(rt, qs, clients, statistics.median(idle)),
            "idle_done_s": round(statistics.median(idle), 2), "load_p50_done_s": round(statistics.median(done), 2),
            "load_p95_done_s": round(pct(done, 0.95), 2), "load_answers_per_min": round(60 * len(done) / wall, 1),
            "load_p95_over_idle": round(pct(done, 0.95) / statistics.median(idle), 2), "second_team": second_team}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--questions-per-client", type=int, default=3)
    ap.add_argument("--idle", type=int, default=4, help="questions asked one at a time first")
    ap.add_argument("--no-autosteer", action="store_true")
    ap.add_argument("--optimizer", default="gradient", choices=["gradient", "numeric"], help="the background auto-steer run's optimiser")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--in-process", action="store_true", help="the answer service alone, from threads")
    ap.add_argument("--second-team", action="store_true", help="with --in-process: a second OpenMP team first")
    args = ap.parse_args()
    from gradio_client import Client

    qs = questions()
    need = args.idle + args.clients * args.questions_per_client
    if len(qs) < need:
        sys.exit(f"only {len(qs)} distinct questions; ask for fewer")
    if args.in_process:
        print(json.dumps(run_in_process(qs, args.clients, args.questions_per_client, args.idle, args.second_team)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = AppServer(Path(tmp)).wait()
        try:
            c = Client(server.url, verbose=False)
            ask(c, "What is a warm-up question?")  # loads the profile's service
            idle = [ask(c, q) for q in qs[: args.idle]]
            load = run_load(server.url, qs[args.idle:], args.clients, args.questions_per_client, not args.no_autosteer,
                            args.optimizer)
        finally:
            server.stop()
    from steering.runtime.shared import get_runtime

    idle_done = statistics.median(r["done_s"] for r in idle)
    floor = decode_floor(get_runtime(), qs, args.clients, idle_done)  # after the server stopped: these cores alone
    figures = {
        "idle_first_words_s": round(statistics.median(r["first_words_s"] for r in idle), 2),
        "idle_done_s": round(idle_done, 2),
        **{f"load_{k}": v for k, v in load.items()},
        "load_p95_over_idle": round(load["p95_done_s"] / idle_done, 2) if load["p95_done_s"] else None,
        **floor,
        "clients": args.clients,
        "optimizer": None if args.no_autosteer else args.optimizer,
    }
    if args.json:
        print(json.dumps(figures))
        return
    for k, v in figures.items():
        print(f"{k:28s} {v}")
    print("targets: idle_first_words_s <= 2; load_p95_over_idle <= 3; load_failed == 0 (floor_over_idle: the least ratio possible)")


if __name__ == "__main__":
    main()
