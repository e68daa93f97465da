"""The first relevance classifier: VA policy topics recognized by keyword patterns.

Cheap and explainable, it runs on every new or changed document; later stages (embeddings, an
LLM) refine what it finds. A title match weighs more than a match in the summary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

METHOD = "keywords-v1"

# Topic -> patterns. Word boundaries keep "VA" from matching inside other words.
TOPIC_PATTERNS: dict[str, tuple[str, ...]] = {
    "disability_compensation": (
        r"disability compensation",
        r"service[- ]connect(?:ed|ion)",
        r"disability rating",
        r"schedule for rating disabilities",
        r"\bVASRD\b",
    ),
    "health_care": (
        r"veterans health administration",
        r"\bVHA\b",
        r"medical (?:care|benefits?)",
        r"health care",
        r"community care",
        r"\bMISSION Act\b",
    ),
    "mental_health": (
        r"mental health",
        r"suicide prevention",
        r"post[- ]traumatic stress",
        r"\bPTSD\b",
    ),
    "toxic_exposure": (
        r"toxic exposure",
        r"\bPACT Act\b",
        r"burn pits?",
        r"agent orange",
        r"camp lejeune",
        r"gulf war illness",
    ),
    "education_employment": (
        r"\bGI Bill\b",
        r"educational assistance",
        r"vocational rehabilitation",
        r"veteran readiness",
        r"employment",
    ),
    "housing_home_loans": (
        r"home loans?",
        r"loan guarant(?:y|ee)",
        r"homeless(?:ness)?",
        r"\bHUD-VASH\b",
        r"specially adapted housing",
    ),
    "pension_survivors": (
        r"\bpensions?\b",
        r"dependency and indemnity",
        r"\bDIC\b",
        r"survivors?'? benefits?",
    ),
    "burial_memorial": (r"burial", r"national cemeter(?:y|ies)", r"memorial", r"headstones?"),
    "caregivers": (r"caregivers?",),
    "claims_appeals": (
        r"appeals?",
        r"board of veterans'? appeals",
        r"claims? (?:processing|backlog)",
        r"\bAMA\b",
    ),
    "veterans_general": (
        r"\bveterans?'?s?\b",
        r"department of veterans affairs",
        r"\bVA\b",
        r"38 (?:CFR|U\.S\.C\.)",
    ),
}

_COMPILED = {
    topic: tuple(re.compile(pattern, re.IGNORECASE) for pattern in patterns)
    for topic, patterns in TOPIC_PATTERNS.items()
}
# "VA" must stay case-sensitive: "va" inside sentences is not the department.
_COMPILED["veterans_general"] = tuple(
    re.compile(pattern) if pattern == r"\bVA\b" else re.compile(pattern, re.IGNORECASE)
    for pattern in TOPIC_PATTERNS["veterans_general"]
)

TITLE_WEIGHT = 0.6
SUMMARY_WEIGHT = 0.3


@dataclass(frozen=True)
class TopicMatch:
    topic: str
    relevance: float


def classify(title: str, summary: str | None = None) -> list[TopicMatch]:
    """Topics a document's text mentions, each with a relevance in (0, 1]."""
    matches = []
    for topic, patterns in _COMPILED.items():
        title_hits = sum(1 for pattern in patterns if pattern.search(title or ""))
        summary_hits = sum(1 for pattern in patterns if pattern.search(summary or ""))
        if not title_hits and not summary_hits:
            continue
        score = TITLE_WEIGHT * min(title_hits, 2) / 2 + SUMMARY_WEIGHT * min(summary_hits, 2) / 2
        if title_hits and summary_hits:
            score += 1 - TITLE_WEIGHT - SUMMARY_WEIGHT
        matches.append(TopicMatch(topic, round(min(score, 1.0), 3)))
    return sorted(matches, key=lambda match: (-match.relevance, match.topic))
