"""The LLM judge: any OpenAI-compatible endpoint writes a critique ending in `Score: N`; and the
judge that puts the offline metric judge behind it, so that an endpoint that times out or answers
nonsense never throws a run away."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .judges import Judge, JudgeContext, JudgeError, Judgement

# The same rubric a person used to score the labelled answers (docs/judge-rubric.md), so that an
# LLM judge's scores mean what the reader's do and `benchmarks/bench_judge.py --judge llm` can
# measure how well it agrees with that reader.
JUDGE_PROMPT = """You are judging a small language model's answers. The behaviour asked for: "{behavior}".
Score each answer with this rubric, from the answer alone:
- behaviour: 0 = no trace of it (a plain answer) or the opposite; 1 = a trace (a word or two, one sentence, the topic without the style); 2 = clearly and throughout.
- question: 0 = ignores the question, or drifts so that most of the answer is about something else; 1 = touches it, then wanders, or answers only a small part; 2 = addresses it (in the behaviour's style if asked).
- fluency: 0 = garbled, broken words, loops (a phrase or sentence repeated), empty; 1 = readable but odd words, stutter or a repeated sentence; 2 = fluent. An answer cut off at the end is normal.
Overall, 0-10: if any part is 0, then 0 or 1 (1 if the other two parts are 2); otherwise 10 x (behaviour + question + fluency - 3) / 3, rounded, moved by at most 1 for what the parts miss. So a fluent answer to the question without the behaviour scores 1, one with a trace of it 6-7, one that shows it throughout 9-10.
For each answer write a line "Answer N: behaviour B, question Q, fluency F, overall S" and one sentence of critique (what works, what to change). End with a final line "Score: X", where X is the mean of the overall scores.

{pairs}"""

# "Answer 2: behaviour 1, question 2, fluency 2, overall 7"
_OVERALL = re.compile(r"answer\s*(\d+)\s*:.*?overall\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.I)


def parse_overall(text: str, n: int) -> list[float]:
    """Each answer's overall score from the critique's "Answer N: ... overall S" lines, in order,
    or [] unless every one of the `n` answers has exactly one score in 0-10."""
    found: dict[int, float] = {}
    for number, value in _OVERALL.findall(text):
        k, v = int(number), float(value)
        if not (1 <= k <= n and 0 <= v <= 10) or k in found:
            return []
        found[k] = v
    return [found[k] for k in range(1, n + 1)] if len(found) == n else []


_SCORE = re.compile(r"score\s*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.I)


def parse_score(text: str) -> float | None:
    """The last `Score: N` in a critique, or None. Scores outside 0-10 are not scores."""
    found = _SCORE.findall(text)
    if not found:
        return None
    value = float(found[-1])
    return value if 0 <= value <= 10 else None


class LLMJudge(Judge):
    name = "llm"

    def __init__(self, client, retries: int = 1):
        self.client = client
        self.retries = retries

    def judge(self, ctx: JudgeContext, outputs: Sequence[str]) -> Judgement:
        pairs = "\n\n".join(f"Question {k}: {p}\nAnswer {k}: {o or '(empty)'}" for k, (p, o) in enumerate(zip(ctx.prompts, outputs), 1))
        messages = [{"role": "user", "content": JUDGE_PROMPT.format(behavior=ctx.behavior, pairs=pairs)}]
        last = ""
        for _ in range(1 + self.retries):
            last = self.client.chat(messages, max_tokens=600)
            score = parse_score(last)
            if score is not None:
                critique = _SCORE.sub("", last).strip() or last
                return Judgement(score, critique, per_prompt=parse_overall(last, len(outputs)))
            messages = messages + [
                {"role": "assistant", "content": last},
                {"role": "user", "content": "End your answer with a line 'Score: N' (N from 0 to 10)."},
            ]
        raise JudgeError(f"the LLM judge gave no 'Score: N' line after {1 + self.retries} tries (last answer: {last[:120]!r})")

    def judge_many(self, ctx: JudgeContext, candidates: Sequence[Sequence[str]]) -> list[Judgement]:
        return [self.judge(ctx, outs) for outs in candidates]


class FallbackJudge(Judge):
    """A primary judge (an LLM endpoint) that never throws a run away: when it cannot score a
    candidate (off-format answer, timeout, endpoint down), the offline metric judge scores that
    candidate instead and the critique says so. Once the endpoint has not answered at all (a
    timeout or no connection: `LLMError.unreachable`), or has answered OFF_FORMAT_LIMIT candidates
    in a row with no score, the rest of the run is judged by the fallback without asking it again:
    a hanging endpoint costs one timeout, not one per answer, and one that answers nonsense a few
    requests, not two per answer."""

    OFF_FORMAT_LIMIT = 3

    def __init__(self, primary: Judge, fallback: Judge):
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name} (falls back to {fallback.name})"
        self.fallbacks = 0  # how many candidates the fallback judged
        self.judged = 0  # how many candidates in all
        self.failed_in_row = 0
        self.down = ""  # why the primary is no longer asked ("" while it is)

    def judge_many(self, ctx: JudgeContext, candidates: Sequence[Sequence[str]]) -> list[Judgement]:
        out = []
        for outs in candidates:
            self.judged += 1
            if self.down:
                out.append(self._fallback(ctx, outs, f"not asked: {self.down}"))
                continue
            try:
                out.append(self.primary.judge_many(ctx, [outs])[0])
                self.failed_in_row = 0
            except Exception as exc:  # noqa: BLE001 - any failure of the endpoint, reported in the critique
                reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
                self.failed_in_row += 1
                if getattr(exc, "unreachable", False):
                    self.down = f"it did not answer earlier in this run ({reason})"
                elif self.failed_in_row >= self.OFF_FORMAT_LIMIT:
                    self.down = f"it could not score {self.failed_in_row} answers in a row earlier in this run ({reason})"
                out.append(self._fallback(ctx, outs, reason))
        return out

    def summary(self) -> str:
        """For the profile's notes: how many answers the fallback scored, and why ("" if none)."""
        if not self.fallbacks:
            return ""
        why = f"; not asked after: {self.down}" if self.down else ""
        return (f"the {self.primary.name} judge scored {self.judged - self.fallbacks} of {self.judged} answers, "
                f"the {self.fallback.name} judge the rest{why}")

    def _fallback(self, ctx: JudgeContext, outs: Sequence[str], reason: str) -> Judgement:
        self.fallbacks += 1
        j = self.fallback.judge_many(ctx, [outs])[0]
        return Judgement(j.score, f"[{self.primary.name} judge failed ({reason}); scored by the {self.fallback.name} judge] {j.critique}",
                         {**j.parts, "fallback": 1.0})
