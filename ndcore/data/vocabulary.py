"""The concept vocabulary of a probe source: labels, categories, primary categories."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np


@dataclass
class Vocabulary:
    """Global label numbering (0 = no label) and the categories each label belongs to.

    ``primary[l]`` is the index (into ``categories``) of label l's primary category: the category
    in which it has the largest coverage, ties going to the later category (docs/method.md
    section 6). ``label_categories[l]`` lists every category the label belongs to.
    """

    categories: List[str]
    label_names: List[str]  # index = label number; entry 0 is "-"
    label_categories: List[List[str]]
    primary: np.ndarray = field(repr=False)  # int64 [L], -1 for label 0
    # coverage[l][cat]: label l's coverage in category cat (decides the primary category)
    coverage: List[Dict[str, float]] = field(default_factory=list, repr=False)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def num_categories(self) -> int:
        return len(self.categories)

    def to_json(self) -> Dict:
        return {
            "categories": list(self.categories),
            "label_names": list(self.label_names),
            "label_categories": [list(c) for c in self.label_categories],
            "primary": [int(p) for p in self.primary],
            "coverage": self.coverage,
        }

    @classmethod
    def from_json(cls, data: Dict) -> "Vocabulary":
        return cls(
            categories=list(data["categories"]),
            label_names=list(data["label_names"]),
            label_categories=[list(c) for c in data["label_categories"]],
            primary=np.asarray(data["primary"], dtype=np.int64),
            coverage=[dict(c) for c in data.get("coverage", [])],
        )

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_json(), f)

    @classmethod
    def load(cls, path) -> "Vocabulary":
        with open(path) as f:
            return cls.from_json(json.load(f))

    def restricted(self, categories: Sequence[str]) -> "Vocabulary":
        """The same numbering, keeping only ``categories`` (in this vocabulary's order).

        A label whose primary category is dropped moves to its best remaining category, so that
        e.g. a label that is both an object and a part stays a part when objects are dropped.
        """
        keep = [c for c in self.categories if c in set(categories)]
        primary = np.full(self.num_labels, -1, dtype=np.int64)
        label_cats = []
        for l, cats in enumerate(self.label_categories):
            kept = [c for c in cats if c in keep]
            label_cats.append(kept)
            if not kept:
                continue
            primary[l] = keep.index(self._best_category(l, kept))
        return Vocabulary(keep, list(self.label_names), label_cats, primary, self.coverage)

    def _best_category(self, label: int, candidates: Sequence[str]) -> str:
        """Largest coverage wins; ties go to the later category (in this vocabulary's order)."""
        cover = self.coverage[label] if label < len(self.coverage) else {}
        ordered = sorted(candidates, key=self.categories.index)
        best = ordered[0]
        for cat in ordered[1:]:
            if cover.get(cat, 0.0) >= cover.get(best, 0.0):
                best = cat
        return best
