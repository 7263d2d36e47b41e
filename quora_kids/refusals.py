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
# The same reply in the child's own language, when the gate named it (quora_kids/language.py): a
# child who cannot read English gets nothing from the English line alone.
NOT_ENGLISH_IN = {
    "Spanish": "Por ahora solo sé leer preguntas en inglés. ¿Puedes preguntármelo en inglés?",
    "French": "Pour l'instant, je ne sais lire que les questions en anglais. Peux-tu la poser en anglais ?",
    "German": "Ich kann bisher nur Fragen auf Englisch lesen. Kannst du sie auf Englisch stellen?",
    "Italian": "Per ora so leggere solo domande in inglese. Puoi farla in inglese?",
    "Portuguese": "Por enquanto só consigo ler perguntas em inglês. Você pode perguntar em inglês?",
    "Dutch": "Ik kan voorlopig alleen vragen in het Engels lezen. Kun je het in het Engels vragen?",
    "Swedish": "Just nu kan jag bara läsa frågor på engelska. Kan du fråga på engelska?",
    "Polish": "Na razie umiem czytać tylko pytania po angielsku. Czy możesz zapytać po angielsku?",
    "Turkish": "Şimdilik sadece İngilizce soruları okuyabiliyorum. İngilizce sorabilir misin?",
    "Russian": "Пока я умею читать только вопросы на английском. Можешь спросить по-английски?",
    "Ukrainian": "Поки що я вмію читати лише запитання англійською. Можеш запитати англійською?",
    "Indonesian": "Untuk sekarang aku hanya bisa membaca pertanyaan dalam bahasa Inggris. Bisakah kamu bertanya dalam bahasa Inggris?",
    "Vietnamese": "Hiện tại mình chỉ đọc được câu hỏi bằng tiếng Anh. Bạn có thể hỏi bằng tiếng Anh không?",
    "Chinese": "我现在只能读懂英文问题。你可以用英文问吗？",
    "Japanese": "いまは英語の質問しか読めません。英語で聞いてくれますか？",
    "Korean": "지금은 영어로 된 질문만 읽을 수 있어요. 영어로 물어봐 줄래요?",
    "Arabic": "حاليًا أستطيع قراءة الأسئلة باللغة الإنجليزية فقط. هل يمكنك أن تسأل بالإنجليزية؟",
    "Hindi": "अभी मैं सिर्फ़ अंग्रेज़ी में पूछे गए सवाल पढ़ सकता हूँ। क्या तुम अंग्रेज़ी में पूछ सकते हो?",
}
REFUSAL_UNREADABLE = "I couldn't read that as a question. Could you ask it with words? For example: Why do cats purr?"


def refusal_for(verdict: SafetyVerdict) -> str:
    """The reply to a refused question, by its verdict's topic (and language)."""
    if verdict.topic == "not_english" and verdict.language in NOT_ENGLISH_IN:
        return f"{REFUSAL_NOT_ENGLISH}\n{NOT_ENGLISH_IN[verdict.language]}"
    return {"self_harm": REFUSAL_SELF_HARM, "running_away": REFUSAL_RUNNING_AWAY, "prompt_injection": REFUSAL_INJECTION,
            "not_english": REFUSAL_NOT_ENGLISH, "unreadable": REFUSAL_UNREADABLE}.get(verdict.topic, REFUSAL)
