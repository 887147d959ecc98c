"""Tiny digit-addition prompt pairs shared by the engine tests (every token is one word-level token)."""

from __future__ import annotations

import random

from circuitft.data.rows import PromptRow


def digit_rows(n: int = 16, seed: int = 0, two_token_answers: bool = False) -> list[PromptRow]:
    """ "a + b =" with the second operand corrupted; answer (a+b) mod 10, wrong = the corrupted sum.

    ``two_token_answers``: rows with a divisible by 3 get the answer "<sum> <a>" (exercises the per-example
    mean over answer positions).
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
        ans, wrong = (a + b) % 10, (a + c) % 10
        wrong = wrong if wrong != ans else (ans + 1) % 10
        answer = f"{ans} {a}" if two_token_answers and a % 3 == 0 else str(ans)
        rows.append(PromptRow(f"{a} + {b} =", f"{a} + {c} =", answer, str(wrong)))
    return rows
