"""Comparing a regenerated table with its published copy on any CPU.

The published tables are computed from committed journals, so their numbers depend only on the
analysis' arithmetic. That arithmetic (numpy's pairwise sums, BLAS, scipy's special functions)
takes other paths on CPUs with other vector units, and the last digits of a full-precision float
differ between, say, an AVX-512 and an AVX2 machine. So the text is compared exactly and the
numbers with a stated tolerance:

- two numbers agree when they differ by at most ``REL_TOL`` of the published one's size, or,
  for a number printed with decimals, by one unit in its last printed digit (a mean printed as
  ``+2.73`` may read ``+2.74`` where it sits on a rounding boundary); integers (counts, seeds)
  must be equal;
- everything between the numbers (words, signs of zero-free numbers, separators) must be equal.
"""

from __future__ import annotations

import re

REL_TOL = 1e-9
"""Relative tolerance between a regenerated and a published number."""

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _last_digit_unit(text: str) -> float:
    """One unit in the last printed digit of a rounded number's text (``2.73`` -> 0.01); 0 for
    an integer."""
    if "." not in text:
        return 0.0
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def table_differences(regenerated: str, published: str) -> list[str]:
    """Where ``regenerated`` differs from ``published`` beyond the tolerance (empty: agree)."""
    new_words, old_words = _NUMBER.split(regenerated), _NUMBER.split(published)
    new_nums, old_nums = _NUMBER.findall(regenerated), _NUMBER.findall(published)
    if new_words != old_words or len(new_nums) != len(old_nums):
        line = next((i for i, (a, b) in enumerate(zip(
            regenerated.splitlines(), published.splitlines(), strict=False)) if
            _NUMBER.sub("#", a) != _NUMBER.sub("#", b)), None)
        return [f"the text differs (first at line {line})"]
    out = []
    for new, old in zip(new_nums, old_nums, strict=True):
        a, b = float(new), float(old)
        if abs(a - b) > max(REL_TOL * abs(b), _last_digit_unit(old) * (1 + 1e-9)):
            out.append(f"{new} where {old} was published")
    return out
