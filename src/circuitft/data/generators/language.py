"""Language tasks with known circuits in pre-trained models.

- **IOI** (indirect object identification, Wang et al. 2022): ``"When Mary and John went to the store,
  John gave a drink to"`` -> ``" Mary"``; ``wrong`` is the subject (``" John"``). The corrupted prompt is
  the ABC variant: the same sentence with three other, distinct names, so it says nothing about the answer.
- **GreaterThan** (Hanna et al. 2023): ``"The war lasted from the year 1732 to the year 17"`` -> a
  two-digit year greater than 32; the corrupted prompt starts in ``1701``; ``wrong`` is the start year's
  two digits (``"32"``, not greater).

All names and words are single tokens with a leading space in SmolLM2's tokenizer and are known to the
tiny test tokenizer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from circuitft.data.generators.spec import Param, TaskSpec
from circuitft.data.rows import PromptRow

NAMES = "Mary John Alice Bob Tom Sarah James Emma David Anna Paul Laura Mark Lisa Peter Kate".split()
PLACES = "store shop park school office beach market kitchen garden".split()
OBJECTS = "drink book ball pen cup key gift letter".split()
IOI_TEMPLATES = (
    "When {A} and {B} went to the {place}, {S} gave a {obj} to",
    "Then, {A} and {B} went to the {place}. {S} gave a {obj} to",
    "After {A} and {B} went to the {place}, {S} gave a {obj} to",
    "While {A} and {B} were at the {place}, {S} gave a {obj} to",
)
EVENTS = "war expedition project strike drought famine".split()
GT_TEMPLATE = "The {event} lasted from the year {century}{start:02d} to the year {century}"
CENTURIES = tuple(range(11, 18))
CORRUPT_START = 1  # the corrupted prompt starts in year XX01


def _ioi(rng: random.Random, slot: int, p: Mapping[str, Any]) -> PromptRow:
    template = rng.choice(IOI_TEMPLATES)
    place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
    io, s, c1, c2, c3 = rng.sample(NAMES, 5)
    first, second = (io, s) if rng.random() < 0.5 else (s, io)

    def fill(a: str, b: str, subj: str) -> str:
        return p["prefix"] + template.format(A=a, B=b, S=subj, place=place, obj=obj)

    return PromptRow(clean=fill(first, second, s), corrupted=fill(c1, c2, c3), answer=" " + io, wrong=" " + s)


def _greater_than(rng: random.Random, slot: int, p: Mapping[str, Any]) -> PromptRow:
    event, century = rng.choice(EVENTS), rng.choice(CENTURIES)
    start = rng.randint(2, 98)
    end = start + 1 if p["end"] == "next" else rng.randint(start + 1, 99)

    def fill(yy: int) -> str:
        return p["prefix"] + GT_TEMPLATE.format(event=event, century=century, start=yy)

    return PromptRow(
        clean=fill(start), corrupted=fill(CORRUPT_START), answer=f"{end:02d}", wrong=f"{start:02d}"
    )


def _ioi_space(p: Mapping[str, Any]) -> list[list[str]]:
    return [
        [
            p["prefix"] + t.format(A=a, B=b, S=subj, place=place, obj=obj)
            for t in IOI_TEMPLATES
            for place in PLACES
            for obj in OBJECTS
            for a in NAMES
            for b in NAMES
            if a != b
            for subj in (a, b)
        ]
    ]


def _greater_than_space(p: Mapping[str, Any]) -> list[list[str]]:
    return [
        [
            p["prefix"] + GT_TEMPLATE.format(event=e, century=c, start=yy)
            for e in EVENTS
            for c in CENTURIES
            for yy in range(2, 99)
        ]
    ]


_PREFIX = Param(str, "", "text before the sentence")

TASKS: list[TaskSpec] = [
    TaskSpec(
        "IOI",
        "indirect object: 'When A and B went to the store, B gave a drink to' -> ' A'; "
        "corrupted: three other names (ABC); wrong: ' B'",
        _ioi,
        {"prefix": _PREFIX},
        problem_space=_ioi_space,
    ),
    TaskSpec(
        "GreaterThan",
        "'The war lasted from the year 17YY to the year 17' -> a year > YY; corrupted: 1701; wrong: YY",
        _greater_than,
        {
            "prefix": _PREFIX,
            "end": Param(str, "random", "answer year: uniform over YY+1..99, or YY+1", ("random", "next")),
        },
        problem_space=_greater_than_space,
    ),
]
