"""Business rules over algorithmic recommendations: exclusions, pins, context rules, boosts.

Precedence, strongest first (a rule always beats an algorithm):
1. exclusions: an excluded (person, item) pair or item never appears, whoever proposed it;
2. pins: pinned items take the first ranks for everyone, in the order configured;
3. context rules: people in a context (e.g. an open checkout) get the rule's items (e.g. the
   curated ones) before any algorithmic item;
4. boosts: an algorithmic item matching a boost moves up (its rank is divided by the factor);
5. the algorithms' own order.
Each output row's `reason` names the rule (`rule:<name>`) or the algorithm behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models_ml.columns import ALGORITHM, CATEGORY, ITEM_ID, PERSON_ID, RANK, REASON, SCORE
from models_ml.recommenders._base import as_index, lexsort_runs

RULE_ALGORITHM = "rule"
CONTEXTS = ("open_checkout",)
CONTEXT_ITEM_SOURCES = ("curated",)


@dataclass(frozen=True)
class ContextRule:
    name: str
    when: str  # a context in CONTEXTS
    items: str = "curated"  # where the items come from (CONTEXT_ITEM_SOURCES)


@dataclass(frozen=True)
class Pin:
    name: str
    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class Boost:
    name: str
    factor: float
    categories: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecommendationRules:
    exclude_purchased: bool = True
    exclude_out_of_stock: bool = True
    context_rules: tuple[ContextRule, ...] = ()
    pins: tuple[Pin, ...] = ()
    boosts: tuple[Boost, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecommendationRules:
        """Validate the parsed `recommendation_rules.yaml`; raise ValueError on any mistake."""
        exclusions = data.get("exclusions") or {}
        names: set[str] = set()

        def named(entry: dict, kind: str) -> str:
            name = str(entry.get("name") or "")
            if not name or name in names:
                raise ValueError(f"{kind}: every rule needs a unique `name` (got {name!r})")
            names.add(name)
            return name

        context = []
        for entry in data.get("context_rules") or []:
            rule = ContextRule(
                named(entry, "context_rules"),
                str(entry.get("when")),
                str(entry.get("items", "curated")),
            )
            if rule.when not in CONTEXTS or rule.items not in CONTEXT_ITEM_SOURCES:
                raise ValueError(f"context rule {rule.name}: unknown `when` or `items`")
            context.append(rule)
        pins = []
        for entry in data.get("pins") or []:
            items = tuple(str(i) for i in entry.get("item_ids") or [])
            if not items:
                raise ValueError(f"pin {entry.get('name')}: `item_ids` is empty")
            pins.append(Pin(named(entry, "pins"), items))
        boosts = []
        for entry in data.get("boosts") or []:
            factor = float(entry.get("factor", 0))
            if factor <= 0:
                raise ValueError(f"boost {entry.get('name')}: `factor` must be positive")
            boosts.append(
                Boost(
                    named(entry, "boosts"),
                    factor,
                    tuple(str(c) for c in entry.get("categories") or []),
                    tuple(str(i) for i in entry.get("item_ids") or []),
                )
            )
        return cls(
            exclude_purchased=bool(exclusions.get("purchased", True)),
            exclude_out_of_stock=bool(exclusions.get("out_of_stock", True)),
            context_rules=tuple(context),
            pins=tuple(pins),
            boosts=tuple(boosts),
        )

    @property
    def extra_depth(self) -> int:
        """Pinned items that may push algorithmic ones down (fetch this many more)."""
        return sum(len(p.item_ids) for p in self.pins)


def apply_rules(
    candidates: pd.DataFrame,
    rules: RecommendationRules,
    k: int,
    *,
    people=None,
    items: pd.DataFrame | None = None,
    contexts: dict[str, Any] | None = None,
    curated_items=(),
    exclude_pairs: pd.DataFrame | None = None,
    exclude_items=(),
) -> pd.DataFrame:
    """Final top-k per person from algorithmic `candidates` (person_id, rank, item_id, score,
    algorithm, reason) and the rules, by the precedence in the module docstring.

    Args:
        people: everyone to recommend for (default: the people in `candidates`); pins and
            context rules reach people without candidates too.
        items: catalog (item_id, category) for category boosts.
        contexts: context name -> person ids in it (e.g. "open_checkout").
        curated_items: the curated items, best first.
        exclude_pairs / exclude_items: never recommended (purchased, out of stock, ...).

    Works on integer codes throughout (tens of millions of rows in seconds).
    """
    people = as_index(candidates[PERSON_ID] if people is None else people)
    person = _positions(people, candidates[PERSON_ID])
    if (person < 0).any():
        candidates, person = candidates[person >= 0], person[person >= 0]
    pinned = [item for pin in rules.pins for item in pin.item_ids]
    curated = list(as_index(curated_items)) if rules.context_rules else []
    candidate_items = candidates[ITEM_ID]
    if isinstance(candidate_items.dtype, pd.CategoricalDtype):
        candidate_items = candidate_items.cat.categories
    item_index = as_index(
        np.concatenate(
            [
                np.asarray(pd.unique(candidate_items), dtype=object),
                np.asarray(pinned, dtype=object),
                np.asarray(curated, dtype=object),
            ]
        )
    )
    n_items = len(item_index)

    # Rows carry a label code into `label_table`: (algorithm, reason) pairs.
    algorithm = pd.Categorical(candidates[ALGORITHM])
    reason = pd.Categorical(candidates[REASON])
    n_reasons = len(reason.categories)
    label_codes, pairs = pd.factorize(algorithm.codes.astype(np.int64) * n_reasons + reason.codes)
    label_table = [
        (str(algorithm.categories[p // n_reasons]), str(reason.categories[p % n_reasons]))
        for p in pairs
    ]
    item = _positions(item_index, candidates[ITEM_ID])
    order = candidates[RANK].to_numpy(dtype=float).copy()
    label = label_codes.astype(np.int64)
    for boost in rules.boosts:
        boosted_items = list(boost.item_ids)
        if boost.categories and items is not None:
            boosted_items += list(items.loc[items[CATEGORY].isin(boost.categories), ITEM_ID])
        match = np.isin(item, item_index.get_indexer(as_index(boosted_items)))
        order[match] /= boost.factor
        offset = len(label_table)
        label_table += [(a, f"rule:{boost.name} boosted {r}") for a, r in label_table]
        label[match] += offset
    parts = [
        (person, item, candidates[SCORE].to_numpy(dtype=float), label, len(rules.pins) + 1, order)
    ]

    excluded_items = item_index.get_indexer(as_index(exclude_items))
    pair_person = pair_item = np.zeros(0, dtype=np.int64)
    if exclude_pairs is not None and len(exclude_pairs):
        pair_person = people.get_indexer(exclude_pairs[PERSON_ID])
        pair_item = item_index.get_indexer(exclude_pairs[ITEM_ID])
        known = (pair_person >= 0) & (pair_item >= 0)
        pair_person, pair_item = pair_person[known], pair_item[known]
    # A rule's items past a person's first k + (number of their excluded pairs) allowed ones
    # never reach their top k: the pairs drop at most that many of the items ahead, and the
    # k or more left (or earlier rows showing the same items) fill it. Cutting there keeps a
    # context rule (hundreds of curated items for each person in it) from outnumbering the
    # algorithmic rows: at L it was 3.4 million rule rows a batch against 2 million.
    depth = k + np.bincount(pair_person, minlength=len(people))

    def rule_part(members: np.ndarray, rule_items: list, name: str, tier: int) -> None:
        codes = item_index.get_indexer(as_index(rule_items)) if rule_items else np.zeros(0, int)
        allowed = np.flatnonzero(~np.isin(codes, excluded_items))
        count = np.minimum(depth[members], len(allowed))
        position = allowed[np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)]
        label_table.append((RULE_ALGORITHM, f"rule:{name}"))
        parts.append(
            (
                np.repeat(members, count),
                codes[position],
                1.0 / (position + 1),
                np.full(len(position), len(label_table) - 1),
                tier,
                position.astype(float),
            )
        )

    everyone = np.arange(len(people))
    for number, pin in enumerate(rules.pins):
        rule_part(everyone, list(pin.item_ids), pin.name, number)
    contexts = contexts or {}
    for rule in rules.context_rules:
        members = people.get_indexer(as_index(contexts.get(rule.when, [])))
        rule_part(np.unique(members[members >= 0]), curated, rule.name, len(rules.pins))

    person = np.concatenate([p[0] for p in parts]).astype(np.int64)
    item = np.concatenate([p[1] for p in parts]).astype(np.int64)
    score = np.concatenate([p[2] for p in parts])
    label = np.concatenate([p[3] for p in parts]).astype(np.int64)
    tier = np.concatenate([np.full(len(p[0]), p[4]) for p in parts])
    order = np.concatenate([p[5] for p in parts])

    keep = ~np.isin(item, excluded_items)
    key = person * n_items + item
    if len(pair_person):
        pair_keys = pair_person.astype(np.int64) * n_items + pair_item
        # a hash lookup; np.isin would sort the millions of keys
        keep &= ~pd.Series(key, copy=False).isin(pair_keys).to_numpy()
    rows = np.flatnonzero(keep)
    rows = rows[lexsort_runs(order[rows], tier[rows], person[rows])]
    rows = rows[_first_occurrences(key[rows])]
    ordered = person[rows]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)])) + 1
    rows, rank = rows[rank <= k], rank[rank <= k]
    algorithm_codes, algorithm_values = pd.factorize(pd.Index([a for a, _ in label_table]))
    reason_codes, reason_values = pd.factorize(pd.Index([r for _, r in label_table]))
    return pd.DataFrame(
        {
            PERSON_ID: people.take(person[rows]),
            RANK: rank.astype(np.int64),
            ITEM_ID: item_index.take(item[rows]),
            SCORE: score[rows],
            ALGORITHM: pd.Categorical.from_codes(
                algorithm_codes[label[rows]], categories=pd.Index(algorithm_values).astype(str)
            ),
            REASON: pd.Categorical.from_codes(
                reason_codes[label[rows]], categories=pd.Index(reason_values).astype(str)
            ),
        }
    )


def _positions(index: pd.Index, values: pd.Series) -> np.ndarray:
    """Positions of `values` in `index` (-1: absent); a categorical is looked up by category."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        lookup = np.append(index.get_indexer(values.cat.categories), -1)
        return lookup[np.where(codes >= 0, codes, len(lookup) - 1)]
    return index.get_indexer(values)


def _first_occurrences(keys: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence of each key (`~Series.duplicated()`), by a stable sort:
    the keys come person by person, so they are nearly sorted already and the sort is cheap
    where hashing two million keys is not."""
    by_key = np.argsort(keys, kind="stable")
    sorted_keys = keys[by_key]
    first = np.ones(len(keys), dtype=bool)
    first[by_key[1:]] = sorted_keys[1:] != sorted_keys[:-1]
    return first
