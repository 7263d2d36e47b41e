"""A kind note beside the answers to the big questions children ask (death, divorce, bodies,
bullying, someone online asking for pictures): the two answers come from a very small model that
can be wrong or clumsy exactly where it matters most, so the site also points to a grown-up.

Two kinds, by the question's words (`care_note`):
- TELL: something may be happening to the child or a friend (a touch, a secret, a bully, feeling
  like hurting oneself, a stranger online): tell a trusted grown-up, and say that asking is fine.
- BIG: a hard topic asked about (death, divorce, where babies come from, war, crime, drugs): the
  answers can help, and a grown-up can help more.

The question is answered either way (these are fair questions: the safety check lets them through);
the note is shown above both answers, on the site and in `quora_kids answer --json` (`care_note`).
"""

from __future__ import annotations

import re

TELL_NOTE = ("💛 If this is happening to you or a friend, please tell a grown-up you trust, like a parent, a teacher or the "
             "school counsellor. You are never in trouble for asking.")
BIG_NOTE = ("💛 This is a big question. The answers below come from a small computer program and can be wrong or clumsy; "
            "a grown-up you trust can help you talk it through.")

_TELL = re.compile("|".join([
    r"\b(touch|touches|touched|touching)\b.*\b(private|parts?|swimsuit|under)",
    r"\bswimsuit\b",
    r"\b(pictures?|photos?|pics?|selfies?)\b.*\b(of me|send|sent)\b",
    r"\b(ask(s|ed|ing)?|want(s|ed)?)\b.*\b(pictures?|photos?|pics?|selfies?)\b",
    r"\bnot to tell\b",
    r"\b(do ?n[o']?t|never) tell (my|your|ur) (mom|mum|mommy|dad|daddy|parents?)\b",
    r"\bsecret friend\b",
    r"\b(bully|bullies|bullied|bullying)\b",
    r"\bpicked on\b|\bpick(s|ing)? on me\b",
    r"\b(trips?|hits?|kicks?|pushe?s?|pushing|laughs? at|laughing at) me\b|\blaughs? at my\b",
    r"\bmean (group )?chat\b",
    r"\bhurt(ing)? (my|her|him|them)sel(f|ves)\b",
    r"\bsuicid",
    r"\bcry every\b|\bsad all the time\b",
    r"\brun(ning)? away\b",
    r"\bmeet\b.*\b(online|internet|video game|game)\b",
    r"\b(online|internet|video game|fortnite|roblox|minecraft)\b.*\b(meet|where i live|address|home alone|secret)\b",
    r"\bhome alone\b|\bwhat city i live\b",
    r"\bgun\b.*\b(school|backpack|class)\b|\b(school|backpack|class)\b.*\bgun\b",
    r"\bkidnap",
    r"\bhugging me\b|\bhugs? me too\b",
    r"\b(private parts?|bathing suit|underwear|under (my|your) clothes|good touch(es)?|bad touch(es)?|(un)?safe secrets?)\b",
    r"\bmy body\b.*\bno\b",
    r"\b(make|makes|making) fun of (me|my)\b|\bcalling me names\b|\bmean to me\b|\bmean messages\b",
    r"\bthreaten(s|ed)?\b|\bbeat me up\b|\bleft me out\b|\btaking my\b.*\bmoney\b|\bsay i'?m (fat|ugly|stupid)\b|\bpushed me\b",
    r"\bstrangers?\b.*\b(online|messages?|game|chat)\b|\b(online|game|chat)\b.*\bstrangers?\b|\bsomeone online\b",
    r"\b(minecraft|roblox|discord|fortnite|online|game chat)\b.*\b(in person|my name|address|uncomfortable|weird picture|about (their|his|her) age|do ?n'?t know)\b",
    r"\bunhappy at home\b|\bnobody at home\b|\bcan'?t find my parents\b",
]), re.I)

_BIG = re.compile("|".join([
    r"\b(die|dies|died|dying|dead|death|deaths|pass(ed)? away|funeral|bury|buried|grave)\b|\bhit by a car\b",
    r"\b(kill|kills|killed|killing)\b",
    r"\bdivorc|\bsplitting up\b|\bbreaking up\b|\btwo houses\b",
    r"\bbab(y|ies)\b.*\b(made|come|comes|born|tummy|belly|from|out)\b",
    r"\bsex\b|\bpregnan",
    r"\b(get|gets|have|having|my|a) periods?\b|\bpuberty\b|\bbreasts?\b|\bwomb\b|\bc[- ]section\b|\bumbilical\b|\bwet dreams?\b",
    r"\bbody (is )?changing\b|\bdifferent bodies\b|\bvoices? (crack|cracks|getting deeper)\b|\bhair in new places\b|\bcrush(es)?\b",
    r"\bwars?\b|\bbombs?\b|\bterroris|\b(a|the|school|mass) shooting\b|\bshootings\b",  # not "shooting stars"
    r"\bcancer\b|\bin (the )?hospital\b",
    r"\bracis|\bskin\b.*\b(colou?r|bad word)\b|\bbad word\b.*\bskin\b|\bbecause of how they look\b|\bimmigrants?\b",
    r"\b(black|white|brown) people\b|\bslave(s|ry)?\b",
    r"\bjail\b|\bprison\b|\brob\b|\bhomeless\b|\bpolice\b.*\bshoot",
    r"\bdrugs?\b|\balcohol|\baddict|\bweed\b|\bcigarettes?\b",
    r"\b(world|earth)\b.*\bend\b",
]), re.I)


def care_note(question: str) -> str:
    """The note to show with the answers to `question` ("" for most questions)."""
    if _TELL.search(question):
        return TELL_NOTE
    if _BIG.search(question):
        return BIG_NOTE
    return ""
