"""Process specs: a data-entry process declared in one YAML file, no Python.

A spec names the target table and its natural key, the fields with their types and
normalizers, the header synonyms, the expectation suite, and how review is routed.
A spec is ``<name>.yaml`` in one of the process folders (``BPO_PROCESS_DIRS``, by default the
shipped ``flows/specs``; see ``bpo.processes``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bpo.processes import SHIPPED_DIRS, spec_file

SPECS_DIR = SHIPPED_DIRS[0]  # the shipped specs

FieldType = Literal["text", "name", "email", "phone", "date", "money", "postal_code", "enum", "integer"]

# Flags the router may raise besides failed expectations. An ambiguous date (no value without a
# person, or a spec's date_order) always goes to review; these go only where a spec routes them.
Flag = Literal["duplicate_key", "low_confidence_mapping"]


class FieldSpec(BaseModel):
    """One field of the target record."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    type: FieldType = "text"
    required: bool = False
    synonyms: list[str] = Field(default_factory=list)
    # enum: canonical value -> the spellings that mean it
    values: dict[str, list[str]] = Field(default_factory=dict)
    # date: "DMY" or "MDY" settles numeric dates like 03/04/2024; None flags them for review
    date_order: Literal["DMY", "MDY"] | None = None
    # money: currency used when the value carries no symbol or code
    default_currency: str | None = None
    # postal_code, phone: the field holding each record's ISO country code, or a fixed country (a phone without
    # either is read in the spec's default_region; so is one whose country field holds no region phonenumbers knows)
    country_field: str | None = None
    country: str | None = None
    max_length: int | None = None


class TargetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str
    key: list[str]


class ApprovalRule(BaseModel):
    """A rule on an approved record's values (``opening_balance >= 10000``): a match needs a second approver."""

    model_config = ConfigDict(extra="forbid")

    field: str
    op: Literal[">=", ">", "<=", "<", "==", "!=", "in"]
    value: str | int | float | list[str | int | float]

    def matches(self, values: dict[str, object]) -> bool:
        """Whether ``values`` (an approved record) falls under the rule; a missing value never does."""
        got = values.get(self.field)
        if got is None:
            return False
        if self.op == "in":
            wanted = self.value if isinstance(self.value, list) else [self.value]
            return str(got) in {str(w) for w in wanted}
        left, right = _number(got), _number(self.value)
        if left is None or right is None:  # not numbers: equality of the text only
            return {"==": str(got) == str(self.value), "!=": str(got) != str(self.value)}.get(self.op, False)
        return {">=": left >= right, ">": left > right, "<=": left <= right, "<": left < right,
                "==": left == right, "!=": left != right}[self.op]


def _number(value: object) -> Decimal | None:
    try:
        return Decimal(str(value).replace(",", ""))
    except (InvalidOperation, ValueError):
        return None


class NotifySpec(BaseModel):
    """Where a process's review tells people of new assignments and overdue items (``bpo.notify``)."""

    model_config = ConfigDict(extra="forbid")

    webhook: str | None = None  # an http(s) URL, sent a JSON POST
    email: str | None = None  # an address, sent a short mail through the SMTP settings

    @model_validator(mode="after")
    def _check(self) -> NotifySpec:
        if self.webhook and not self.webhook.startswith(("http://", "https://")):
            raise ValueError("review.notify.webhook must be an http:// or https:// URL")
        if self.email:
            try:
                validate_email(self.email, check_deliverability=False)
            except EmailNotValidError as exc:
                raise ValueError(f"review.notify.email is not an address: {exc}") from None
        return self


class ReviewSpec(BaseModel):
    """How records that automation cannot settle are reviewed."""

    model_config = ConfigDict(extra="forbid")

    # which flags send a record to review (failed expectations and unreadable values always do)
    route: list[Flag] = Field(default_factory=lambda: list[Flag](["duplicate_key", "low_confidence_mapping"]))
    due_hours: float = 24.0
    on_timeout: Literal["escalate", "reject"] = "escalate"
    # all or nothing: load no record of the batch until every item is decided (default: records
    # that pass are loaded at once, only those under review wait)
    hold_batch: bool = False
    # a person approves the whole batch (a gate) after the records' review and before anything is loaded;
    # a rejected gate loads nothing and rejects every record
    gate: bool = False
    # the groups (teams) whose agents review this process; empty: every agent may
    groups: list[str] = Field(default_factory=list)
    # four-eyes: an approval whose values match any of these rules needs a second, different approver
    four_eyes: list[ApprovalRule] = Field(default_factory=list)
    # quality sampling: this share of the records that pass every check goes to review all the same,
    # unmarked, so that the agents' verdicts measure how often straight-through records are right
    sample_share: float = Field(default=0.0, ge=0.0, le=1.0)
    # how urgent this process's items are: higher ones come first when an agent asks for the next item
    priority: int = Field(default=0, ge=0, le=9)
    # least_loaded: each new record item is assigned at once to the member of ``groups`` holding fewest open
    # items (a gate is not: it waits for a supervisor, or for the approver of a signed link)
    assign: Literal["none", "least_loaded"] = "none"
    notify: NotifySpec = Field(default_factory=NotifySpec)

    @model_validator(mode="after")
    def _assign_needs_groups(self) -> ReviewSpec:
        if self.assign == "least_loaded" and not self.groups:
            raise ValueError("review.assign: least_loaded needs review.groups (whose members are assigned)")
        return self


class IntakeSpec(BaseModel):
    """Which part of a file holds the records, where a file can hold more than one thing."""

    model_config = ConfigDict(extra="forbid")

    # XLSX: read only this worksheet (the others are noted as not read); None reads every sheet
    sheet: str | None = None
    # JSON: dotted path of the record array inside the top-level object ("data.records");
    # None takes a top-level array as the records and a top-level object as one record
    json_records: str | None = None


class ProcessSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    target: TargetSpec
    suite: str
    default_region: str = "US"
    fields: dict[str, FieldSpec]
    review: ReviewSpec = Field(default_factory=ReviewSpec)
    intake: IntakeSpec = Field(default_factory=IntakeSpec)

    @model_validator(mode="after")
    def _check(self) -> ProcessSpec:
        for name, field in self.fields.items():
            field.name = name
        missing = [k for k in self.target.key if k not in self.fields]
        if missing:
            raise ValueError(f"target key {missing} is not among the fields")
        for field in self.fields.values():
            if field.type == "enum" and not field.values:
                raise ValueError(f"enum field {field.name!r} declares no values")
            if field.country_field and field.country_field not in self.fields:
                raise ValueError(f"field {field.name!r}: country_field {field.country_field!r} is not a field")
        return self

    @property
    def slug(self) -> str:
        """The spec's file stem, used for suite and artifact names."""
        return self.name.replace("-", "_")


def process_spec_paths() -> list[Path]:
    """The shipped data-entry specs (a cleanup spec, ``kind: cleanup``, lives beside them but is another model)."""
    return sorted(p for p in SPECS_DIR.glob("*.yaml")
                  if (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("kind", "data_entry") == "data_entry")


def load_spec(name_or_path: str | Path) -> ProcessSpec:
    """Load a spec by name (``customer_onboarding``, looked up in the process folders) or by path to a YAML file."""
    path = spec_file(name_or_path, "process spec")
    return _parse(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _parse(path: Path, _mtime_ns: int) -> ProcessSpec:
    """Parsed once per version of the file: an agent resolving thousands of items reads it once."""
    return ProcessSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
