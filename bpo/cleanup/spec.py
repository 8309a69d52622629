"""Cleanup specs: how one client table is cleaned, declared in one YAML file beside the process specs.

A cleanup spec names the table's primary key, each column's role (what kind of value it holds, which
decides how it is standardized and how two rows are compared), the survivorship rules that build a
merged row, the thresholds of the match model, the tables that reference this one, and how a merged
row is removed. It is ``<name>.yaml`` in a process folder (``kind: cleanup``) or any YAML file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bpo.processes import spec_file
from bpo.spec import ReviewSpec

Role = Literal["person_name", "organisation_name", "email", "phone", "street_address", "city", "postal_code",
               "country", "date_of_birth", "free_text", "identifier"]
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]

# how a merged row takes each column's value from the rows of its cluster
Rule = Literal["most_complete", "most_recent", "source_priority"]


class ColumnSpec(BaseModel):
    """One column the cleanup reads: its role, and what standardizing it needs to know."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    role: Role
    # standardize: propose reformatted values (safe ones apply without review); False leaves the column as it is
    standardize: bool = True
    # compare: use the column in the match model; False keeps it out (e.g. a free-text note)
    compare: bool = True
    # date_of_birth: settles numeric dates like 03/04/1980 (else such a value is left unchanged)
    date_order: Literal["DMY", "MDY"] | None = None
    # phone, postal_code: the country assumed for a value without one (ISO 3166 alpha-2)
    country: str | None = None
    # phone, postal_code: the column that holds each row's country, when there is one
    country_column: str | None = None


class Survivorship(BaseModel):
    """Which value a merged row keeps, per column; the row kept is the cluster's most complete one."""

    model_config = ConfigDict(extra="forbid")

    default: Rule = "most_complete"
    columns: dict[str, Rule] = Field(default_factory=dict)
    # most_recent: the column saying when a row last changed (a date or timestamp)
    recency_column: str | None = None
    # source_priority: the column naming each row's source, and the sources from most to least trusted
    source_column: str | None = None
    source_priority: list[str] = Field(default_factory=list)

    def rule(self, column: str) -> Rule:
        return self.columns.get(column, self.default)


class Thresholds(BaseModel):
    """Match probabilities: at or above ``auto_merge`` pairs merge, from ``review`` a person decides."""

    model_config = ConfigDict(extra="forbid")

    auto_merge: float = Field(default=0.99, gt=0.0, le=1.0)
    review: float = Field(default=0.80, gt=0.0, le=1.0)
    # a change set touching more than this share of the table's rows waits for one gate (approve/reject)
    gate_share: float = Field(default=0.10, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review > self.auto_merge:
            raise ValueError(f"thresholds: review ({self.review}) is above auto_merge ({self.auto_merge})")
        return self


class Reference(BaseModel):
    """A table whose column points at this table's key: re-pointed to the survivor when rows merge."""

    model_config = ConfigDict(extra="forbid")

    table: str
    column: str
    key: list[str] = Field(default_factory=list)  # its primary key; empty: read from the database


class MergeSpec(BaseModel):
    """How a row merged into another leaves the table."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["delete", "soft_delete"] = "delete"
    column: str = "merged_into"  # soft_delete: the column that receives the survivor's key


class CleanupSpec(BaseModel):
    """One client table's cleanup."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["cleanup"] = "cleanup"
    name: str
    description: str = ""
    table: str | None = None  # the default table; a run may name another of the same shape
    key: str  # the primary key column (one column)
    columns: dict[str, ColumnSpec]
    default_country: str = "US"
    survivorship: Survivorship = Field(default_factory=Survivorship)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    references: list[Reference] = Field(default_factory=list)
    merge: MergeSpec = Field(default_factory=MergeSpec)
    review: ReviewSpec = Field(default_factory=ReviewSpec)
    chunk_rows: int = Field(default=25_000, ge=1)

    @model_validator(mode="after")
    def _check(self) -> CleanupSpec:
        for name, column in self.columns.items():
            column.name = name
            if column.country_column and column.country_column not in self.columns:
                raise ValueError(f"column {name!r}: country_column {column.country_column!r} is not a column "
                                 f"of the spec")
        if self.key in self.columns:
            raise ValueError(f"key {self.key!r} is listed under columns: the key is never standardized or merged")
        for named in self.survivorship.columns:
            if named not in self.columns:
                raise ValueError(f"survivorship names column {named!r}, which is not a column of the spec")
        if "most_recent" in {self.survivorship.default, *self.survivorship.columns.values()} \
                and not self.survivorship.recency_column:
            raise ValueError("survivorship most_recent needs recency_column")
        if "source_priority" in {self.survivorship.default, *self.survivorship.columns.values()} \
                and not (self.survivorship.source_column and self.survivorship.source_priority):
            raise ValueError("survivorship source_priority needs source_column and source_priority")
        if self.merge.mode == "soft_delete" and self.merge.column in self.columns:
            raise ValueError(f"merge column {self.merge.column!r} is also a column to clean")
        if not any(c.compare for c in self.columns.values()):
            raise ValueError("no column is compared (compare: true): nothing to match rows on")
        return self

    def table_columns(self) -> list[str]:
        """Every column the cleanup reads besides the key: the roles', and the survivorship and merge columns."""
        extra = [self.survivorship.recency_column, self.survivorship.source_column,
                 self.merge.column if self.merge.mode == "soft_delete" else None]
        return list(dict.fromkeys([*self.columns, *(c for c in extra if c)]))


def load_cleanup_spec(name_or_path: str | Path) -> CleanupSpec:
    """Load a cleanup spec by name (looked up in the process folders) or by path to a YAML file."""
    path = spec_file(name_or_path, "cleanup spec")
    return _parse(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _parse(path: Path, _mtime_ns: int) -> CleanupSpec:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a cleanup spec is a YAML mapping")
    return CleanupSpec.model_validate(data)
