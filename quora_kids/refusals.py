"""What the kids' site says instead of an answer: kind replies to a question the safety check
refused (one per topic where a plain "ask a grown-up" would not fit), and the answer shown when
every try at an answer was withheld."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .safety import SafetyVerdict

REFUSAL = (
    "That's a question to talk about with a grown-up you trust, like a parent, a teacher or a school "
    "counsellor. They can help you with it properly. Is there something else you'd like to know?"
)
REFUSAL_SELF_HARM = (
    "I'm really glad you asked someone. If you are thinking about hurting yourself, please tell a grown-up "
    "you trust right now, like a parent, a teacher or a school counsellor. You can also call a children's "
    "helpline. You matter, and people want to help you."
)
FALLBACK_ANSWER = (
    "Hmm, I couldn't find a good way to answer that one. A grown-up you trust, like a parent or a teacher, "
    "can help you find out!"
)


REFUSAL_RUNNING_AWAY = (
    "It sounds like things might feel hard at home right now. Please talk to a grown-up you trust, like a "
    "teacher, a school counsellor or a relative. You can also call a children's helpline: they listen, and "
    "they can help you stay safe."
)
REFUSAL_INJECTION = (
    "I can't change my rules, but I'd love to help with a real question! Ask me about animals, space, "
    "how things work, or anything else you're curious about."
)


REFUSAL_NOT_ENGLISH = (
    "I can only read questions in English so far. Could you ask it in English? For example: "
    "Why is the sky blue?"
)
REFUSAL_UNREADABLE = "I couldn't read that as a question. Could you ask it with words? For example: Why do cats purr?"


def refusal_for(verdict: SafetyVerdict) -> str:
    """The reply to a refused question, by its verdict's topic."""
    return {"self_harm": REFUSAL_SELF_HARM, "running_away": REFUSAL_RUNNING_AWAY, "prompt_injection": REFUSAL_INJECTION,
            "not_english": REFUSAL_NOT_ENGLISH, "unreadable": REFUSAL_UNREADABLE}.get(verdict.topic, REFUSAL)
