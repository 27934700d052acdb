"""Left-deep formulas over label numbers: their text form, a parser and an evaluator.

A formula of length k is ``L1 op1 L2 op2 ... Lk``, read left to right (left-deep):
``F1 = L1``, ``F(i+1) = Fi op_i L(i+1)`` with op in ``OR``, ``AND``, ``AND NOT``. Text form:

* length 1: ``water``
* length 2: ``water OR river``
* length 3: ``(water OR river) AND NOT blue-c`` (the left side is parenthesised whenever it has
  an operator, so ``((a OR b) AND c) OR d`` for length 4).

Operators are written in upper case with single spaces; label names are the probe set's names
verbatim (they may contain spaces). ``parse_formula`` inverts ``format_formula`` given the names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from ndcore.errors import NdcoreError

OR, AND, AND_NOT = 0, 1, 2
OPS: Tuple[str, ...] = ("OR", "AND", "AND NOT")  # index = op code; also the tie-break order


class FormulaError(NdcoreError):
    """A formula string cannot be parsed, or a search was asked for something it cannot do."""


@dataclass(frozen=True)
class Formula:
    """``labels[0] ops[0] labels[1] ops[1] ...``, left-deep; ``len(ops) == len(labels) - 1``."""

    labels: Tuple[int, ...]
    ops: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.ops) != max(len(self.labels) - 1, 0):
            raise FormulaError(f"formula with {len(self.labels)} labels needs "
                               f"{len(self.labels) - 1} operators, got {len(self.ops)}")

    def __len__(self) -> int:
        return len(self.labels)

    def key(self) -> Tuple[int, ...]:
        """The tie-break order: shorter first, then (L1, op1, L2, op2, ...) lexicographically."""
        seq = [self.labels[0]] if self.labels else []
        for op, lab in zip(self.ops, self.labels[1:]):
            seq += [op, lab]
        return (len(self.labels), *seq)


def format_formula(formula: Formula, names: Sequence[str]) -> str:
    """The text form (module docstring); the empty formula (no label meets the unit) is ''."""
    if not formula.labels:
        return ""
    text = names[formula.labels[0]]
    for i, (op, lab) in enumerate(zip(formula.ops, formula.labels[1:])):
        left = f"({text})" if i > 0 else text
        text = f"{left} {OPS[op]} {names[lab]}"
    return text


def parse_formula(text: str, names: Sequence[str]) -> Formula:
    """Inverse of ``format_formula``; label numbers are indices into ``names`` (0 is 'none')."""
    index: Dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)
    if text == "":
        return Formula(())
    parsed = _parse(text, index)
    if parsed is None:
        raise FormulaError(f"cannot parse formula {text!r}: expected 'label', 'label OP label' or "
                           f"'(left) OP label' with OP in OR, AND, AND NOT and known label names")
    return parsed


def _parse(text: str, index: Dict[str, int]) -> Optional[Formula]:
    if text in index:
        return Formula((index[text],))
    # Try every place an operator could split 'left OP label' (names may contain spaces).
    for op in (AND_NOT, AND, OR):  # AND NOT before AND: ' AND NOT x' also contains ' AND '
        token = f" {OPS[op]} "
        start = 0
        while True:
            at = text.find(token, start)
            if at < 0:
                break
            left, right = text[:at], text[at + len(token):]
            start = at + 1
            if right not in index:
                continue
            if left.startswith("(") and left.endswith(")"):
                inner = _parse(left[1:-1], index)
                if inner is not None and len(inner) >= 2:
                    return Formula(inner.labels + (index[right],), inner.ops + (op,))
            if left in index:
                return Formula((index[left], index[right]), (op,))
    return None


def evaluate(formula: Formula, mask_of: Callable[[int], np.ndarray]) -> np.ndarray:
    """The formula's boolean mask, given ``mask_of(label) -> bool array`` (any common shape)."""
    if not formula.labels:
        raise FormulaError("the empty formula has no mask")
    mask = np.asarray(mask_of(formula.labels[0]), dtype=bool).copy()
    for op, lab in zip(formula.ops, formula.labels[1:]):
        other = np.asarray(mask_of(lab), dtype=bool)
        if op == OR:
            mask |= other
        elif op == AND:
            mask &= other
        else:
            mask &= ~other
    return mask
