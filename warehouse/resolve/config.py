"""The resolver's configuration: which table, which columns, how to block, compare, veto and cluster."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ResolverConfigError

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_TABLE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")


@dataclass(frozen=True)
class Level:
    """One level of a comparison: a SQL condition on `l.` and `r.` columns; the first true level wins.

    `tf_column` turns on the term-frequency adjustment at this level: the pair's u probability is
    replaced by the frequency of its value in that column, so a common name counts for less.
    `evidence`: how many independent identifying fields a pair at this level agrees on (a name
    that matches: 1; a valid ID that matches: 2, enough alone), counted against
    `ResolverConfig.min_evidence`. A missing value (the null condition) is never evidence.
    """

    label: str
    condition: str
    tf_column: str | None = None
    evidence: int = 0


@dataclass(frozen=True)
class Comparison:
    """A compared attribute: a null condition (no evidence either way) and ordered levels.

    Pairs that meet no level fall into the implicit last level `else_label` (usually 'different').
    A condition that is NULL counts as false, so `null_condition` must catch missing values.
    `veto_levels` name levels (labels) at which a pair never links, whatever its score.
    """

    name: str
    levels: tuple[Level, ...]
    null_condition: str = "false"
    else_label: str = "different"
    veto_levels: tuple[str, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        """Level labels in level order, the implicit else level last."""
        return (*(lv.label for lv in self.levels), self.else_label)


@dataclass(frozen=True)
class ResolverConfig:
    """Everything the generic resolver needs to know about one entity table.

    - `input_table`: one row per source record; `id_column` unique; `source_column`/`key_column`
      are copied to the output (they may be the same column as `id_column` for a single-source table).
    - `columns`: the columns blocking, comparisons, vetoes and anchors read; records identical on all
      of them are resolved once as one "profile".
    - `blocking_rules`: SQL join conditions on `l.`/`r.`; candidate pairs are their union, de-duplicated.
      A rule may be one-sided (`l.id is null and l.x = r.x`): pairs are ordered after the join.
    - `comparisons`: Fellegi–Sunter comparisons; m by EM on pattern counts, u from random pairs.
    - `vetoes`: SQL conditions on `l.`/`r.`; a pair meeting any never links, whatever its score.
    - `anchor_column`: records sharing a non-null value are one cluster, and two clusters with
      different values never merge, not even through records without a value.
    - `exclusive_columns`: SQL expressions over one record; a cluster holds at most one non-null value.
    - `exclusive_near`: per exclusive column (its expression as given), a SQL condition on `{a}` and
      `{b}` under which a joining record's value still fits the cluster's (e.g. a masked ID one typo
      from the one its cluster holds: `damerau_levenshtein({a}, {b}) <= 1`). It must fit the values
      the cluster's anchor records hold, or where they hold none, the smallest and the largest value
      the cluster holds: a second typo one off the first is not let in. A component of records without an anchor is still
      split on any two different values.
    - `threshold`: minimum match probability of a link.
    - `refuse_ties`: a record whose best links lead to two or more clusters at the same weight joins
      none of them (it cannot tell them apart, e.g. a caller who gave a name and no phone, about a
      building where two namesakes are registered); off, it joins the one that sorts first.
    - `link_type`: "dedupe" compares every record with every other; "link_only" compares only
      records of different sources (`source_column`), e.g. two files that are each free of duplicates.
    - `one_to_one`: a record links to at most one record of each other source, its best-scoring one,
      and only when that record's best of this source is it too (mutual best links); so two records
      of one source never meet through a record of another. Usually with "link_only".
    - `u_sample_pairs`: random pairs drawn to estimate u; None (the default) scales them to the
      input: `u_pairs_per_profile` per distinct profile, at least 10,000 and at most `u_max_pairs`,
      so a level agreeing once in n random pairs is still seen about 50 times, and a small table
      does not pay for a district's million pairs.
    - `min_evidence`: a pair links only when the `evidence` of the levels it meets adds up to at
      least this (e.g. 2: two agreeing identifying fields, or one worth 2 such as a valid ID), so a
      thin record never links on one strong field alone however high its score; 0 turns it off.
    """

    name: str
    input_table: str
    id_column: str
    columns: tuple[str, ...]
    blocking_rules: tuple[str, ...]
    comparisons: tuple[Comparison, ...]
    source_column: str | None = None
    key_column: str | None = None
    filter: str | None = None
    vetoes: tuple[str, ...] = ()
    anchor_column: str | None = None
    anchor_rule: str = "same anchor value"
    exclusive_columns: tuple[str, ...] = ()
    exclusive_near: dict[str, str] = field(default_factory=dict)
    threshold: float = 0.99
    refuse_ties: bool = False
    min_evidence: int = 0
    output_table: str = "core.person_source"
    id_prefix: str = "P"
    id_digits: int = 9
    link_type: str = "dedupe"
    one_to_one: bool = False
    u_sample_pairs: int | None = None
    u_pairs_per_profile: int = 50
    u_max_pairs: int = 1_000_000
    seed: int = 42
    em_max_iterations: int = 100
    em_tolerance: float = 1e-6
    max_join_rounds: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ResolverConfigError(f"name {self.name!r}: use lowercase letters, digits and _")
        for what, value in (("input_table", self.input_table), ("output_table", self.output_table)):
            if not _TABLE.match(value):
                raise ResolverConfigError(f"{what} {value!r}: expected [schema.]table in lowercase")
        cols = set(self.columns)
        for what, col in (("id_column", self.id_column), ("source_column", self.source_column),
                          ("key_column", self.key_column), ("anchor_column", self.anchor_column)):
            if col is not None and not _NAME.match(col):
                raise ResolverConfigError(f"{what} {col!r}: expected a plain column name")
        if self.anchor_column is not None and self.anchor_column not in cols:
            raise ResolverConfigError(f"anchor_column {self.anchor_column!r} must be one of columns")
        if not self.blocking_rules:
            raise ResolverConfigError("blocking_rules: give at least one rule, e.g. 'l.phone = r.phone'")
        if not self.comparisons:
            raise ResolverConfigError("comparisons: give at least one comparison")
        names = [c.name for c in self.comparisons]
        if len(set(names)) != len(names):
            raise ResolverConfigError(f"comparisons: names must be unique, got {names}")
        for c in self.comparisons:
            if not _NAME.match(c.name):
                raise ResolverConfigError(f"comparison {c.name!r}: use lowercase letters, digits and _")
            if not c.levels:
                raise ResolverConfigError(f"comparison {c.name!r}: give at least one level")
            for label in c.veto_levels:
                if label not in c.labels:
                    raise ResolverConfigError(f"comparison {c.name!r}: veto level {label!r} is not one of {c.labels}")
            for lv in c.levels:
                if lv.tf_column is not None and lv.tf_column not in cols:
                    raise ResolverConfigError(
                        f"comparison {c.name!r} level {lv.label!r}: tf_column {lv.tf_column!r} must be one of columns")
        for c in self.comparisons:
            for lv in c.levels:
                if lv.evidence < 0:
                    raise ResolverConfigError(f"comparison {c.name!r} level {lv.label!r}: evidence must be >= 0")
        for col, near in self.exclusive_near.items():
            if col not in self.exclusive_columns:
                raise ResolverConfigError(f"exclusive_near: {col!r} is not one of exclusive_columns")
            if "{a}" not in near or "{b}" not in near:
                raise ResolverConfigError(f"exclusive_near[{col!r}]: a condition on {{a}} and {{b}}, got {near!r}")
        if self.min_evidence < 0:
            raise ResolverConfigError(f"min_evidence {self.min_evidence}: give 0 (off) or more")
        if self.min_evidence and sum(max((lv.evidence for lv in c.levels), default=0)
                                     for c in self.comparisons) < self.min_evidence:
            raise ResolverConfigError(
                f"min_evidence {self.min_evidence}: no pair could link; give levels an evidence "
                f"(e.g. name exact: 1, phone exact: 1, a valid ID: 2)")
        if self.u_sample_pairs is not None and self.u_sample_pairs < 1 or self.u_pairs_per_profile < 1 \
                or self.u_max_pairs < 1:
            raise ResolverConfigError("u_sample_pairs, u_pairs_per_profile and u_max_pairs must be positive")
        if self.link_type not in ("dedupe", "link_only"):
            raise ResolverConfigError(f"link_type {self.link_type!r}: use 'dedupe' or 'link_only'")
        if (self.link_type == "link_only" or self.one_to_one) and self.source_column is None:
            raise ResolverConfigError("link_type 'link_only' and one_to_one need source_column (which file a record is from)")
        if not 0.5 <= self.threshold < 1:
            raise ResolverConfigError(f"threshold {self.threshold}: a match probability in [0.5, 1)")
        if not self.id_prefix.isalpha() or not 4 <= self.id_digits <= 18:
            raise ResolverConfigError("id_prefix must be letters and id_digits between 4 and 18")

    def u_pairs(self, n_profiles: int) -> int:
        """How many random pairs to draw for u from `n_profiles` profiles."""
        if self.u_sample_pairs is not None:
            return self.u_sample_pairs
        return min(self.u_max_pairs, max(10_000, self.u_pairs_per_profile * n_profiles))

    def columns_of(self, sql: str) -> set[str]:
        """The l./r. columns a SQL condition reads."""
        return set(re.findall(r"\b[lr]\.([a-z_][a-z0-9_]*)", sql))

    def blocked_comparisons(self, rule: str) -> set[str]:
        """Comparisons reading a column the blocking rule fixes: EM does not train them on its pairs."""
        used = self.columns_of(rule)
        return {c.name for c in self.comparisons
                if used & self.columns_of(" ".join(lv.condition for lv in c.levels))}

    @property
    def tf_columns(self) -> tuple[str, ...]:
        """Columns with a term-frequency adjustment somewhere, in first-use order."""
        seen: list[str] = []
        for c in self.comparisons:
            for lv in c.levels:
                if lv.tf_column and lv.tf_column not in seen:
                    seen.append(lv.tf_column)
        return tuple(seen)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResolverConfig:
        """Build a configuration from plain data (a parsed YAML/JSON document).

        Comparisons are `{name, null_condition?, else_label?, levels: [{label, condition, tf_column?, evidence?}]}`;
        list fields may be lists; unknown keys are an error, so a typo never passes silently.
        """
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ResolverConfigError(f"unknown configuration keys: {sorted(unknown)}")
        values = dict(data)
        try:
            values["comparisons"] = tuple(
                Comparison(name=c["name"], null_condition=c.get("null_condition", "false"),
                           else_label=c.get("else_label", "different"),
                           veto_levels=tuple(c.get("veto_levels", ())),
                           levels=tuple(Level(label=lv["label"], condition=lv["condition"],
                                              tf_column=lv.get("tf_column"), evidence=lv.get("evidence", 0))
                                        for lv in c["levels"]))
                for c in data["comparisons"])
        except (KeyError, TypeError) as exc:
            raise ResolverConfigError(f"comparisons: each needs name and levels with label and condition ({exc})") from exc
        for key in ("columns", "blocking_rules", "vetoes", "exclusive_columns"):
            if key in values:
                values[key] = tuple(values[key])
        if "exclusive_near" in values:
            values["exclusive_near"] = dict(values["exclusive_near"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ResolverConfigError(f"configuration incomplete: {exc}") from exc
