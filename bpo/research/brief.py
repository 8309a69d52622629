"""Research briefs: what to compile, about whom, from which sources — one YAML or JSON file, no Python.

A brief names the subjects (with whatever identifiers are known), the fields to compile (a type
each, which are required, the labels and schema.org properties that name them in a source), the
completeness threshold, and the sources: a document corpus (a folder or an S3 prefix), web pages
under an allowlist of base URLs (URL templates filled per subject), and SQL tables (a query per
subject, its parameters bound). The subjects may also come from a CSV file: ``subjects: file.csv``
in the brief, or a CSV passed as the brief itself, its settings then read from the YAML or JSON file
of the same name beside it.

Every mistake is refused here, all at once and before any fetch: an unknown field type, no
subjects, a web page outside its allowlist, a template naming an identifier a subject lacks.
"""

from __future__ import annotations

import csv
import io
import json
import re
import string
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bpo.processes import spec_file
from bpo.spec import ReviewSpec

FieldType = Literal["text", "name", "organisation", "email", "phone", "date", "money", "url", "year", "count"]
FIELD_TYPES: tuple[str, ...] = FieldType.__args__  # type: ignore[attr-defined]


class BriefError(ValueError):
    """A brief that cannot be compiled; the message lists every reason."""


class ResearchField(BaseModel):
    """One field of the deliverable."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    type: FieldType = "text"
    required: bool = False
    # how sources label it: table headers, definition terms, "Label: value" lines, CSV/SQL columns
    labels: list[str] = Field(default_factory=list)
    # schema.org / OpenGraph properties that hold it (e.g. telephone, foundingDate, og:url)
    properties: list[str] = Field(default_factory=list)
    # year, count: the plausible range
    minimum: int | None = None
    maximum: int | None = None
    # phone: the region assumed for a number without a country code; money: the currency assumed
    country: str | None = None
    currency: str | None = None

    def names(self) -> list[str]:
        """Every label that names this field, the field's own name first, lower-cased."""
        seen: dict[str, None] = {}
        for label in [self.name, self.name.replace("_", " "), *self.labels]:
            seen.setdefault(label.strip().lower(), None)
        return [label for label in seen if label]


class Subject(BaseModel):
    """Whom or what a profile is about."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    identifiers: dict[str, str] = Field(default_factory=dict)

    @field_validator("id", "name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    def terms(self) -> dict[str, str]:
        """What a URL template or a SQL query may name: id, name, slug and every identifier."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
        return {**self.identifiers, "id": self.id, "name": self.name, "slug": slug}


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    # the configured trust, a prior for truth discovery (0 < trust < 1)
    trust: float = Field(default=0.6, gt=0, lt=1)


class CorpusSource(_Source):
    """Documents in a folder or under an S3 prefix: HTML, PDF, plain text and CSV."""

    kind: Literal["corpus"]
    path: str  # a folder (relative to the brief) or s3://bucket/prefix


class WebSource(_Source):
    """Web pages, each URL filled in per subject, all under the allowlisted base URLs."""

    kind: Literal["web"]
    allow: list[str] = Field(min_length=1)  # base URLs: a page or redirect outside them is refused
    pages: list[str] = Field(min_length=1)  # URL templates: {id}, {name}, {slug} or an identifier's name
    # hosts that may resolve to a loopback, private or link-local address (refused otherwise); for a
    # client's intranet, or a test's own server — named explicitly, never by default
    private_hosts: list[str] = Field(default_factory=list)
    requests_per_second: float = Field(default=4.0, gt=0)  # per host
    concurrency: int = Field(default=2, ge=1)  # per host
    max_bytes: int = Field(default=5_000_000, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=15.0, gt=0)
    retries: int = Field(default=3, ge=0)
    robots: bool = True  # honour robots.txt

    @model_validator(mode="after")
    def _check(self) -> WebSource:
        problems = []
        for base in self.allow:
            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(f"allow entry {base!r} is not an http(s) URL")
        for page in self.pages:
            fields = [f for _, f, _, _ in string.Formatter().parse(page) if f is not None]
            sample = page.format_map({f: "x" for f in fields}) if fields else page
            if not any(allowed(sample, base) for base in self.allow):
                problems.append(f"page {page!r} is outside the allowlist {self.allow}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def urls(self, subject: Subject) -> list[str]:
        """This source's pages for one subject, each value URL-quoted into its template."""
        terms = {k: quote(v, safe="") for k, v in subject.terms().items()}
        return [page.format_map(terms) for page in self.pages]


class SqlSource(_Source):
    """A SQL table read through SQLAlchemy: one query per subject, its parameters bound."""

    kind: Literal["sql"]
    database: str  # a SQLAlchemy URL without a password, or a connection named in BPO_CONNECTIONS
    query: str  # e.g. SELECT phone, founded FROM companies WHERE lei = :lei


Source = Annotated[CorpusSource | WebSource | SqlSource, Field(discriminator="kind")]


class ResearchReview(ReviewSpec):
    """The platform's review settings (groups, due hours, timeouts, priority, notifications), plus research's own."""

    # a chosen value below this confidence goes to review; so does every conflict and missing required field
    min_confidence: float = Field(default=0.8, ge=0, le=1)
    gate: bool = True  # the finished report waits for approval before it is published


class Brief(BaseModel):
    """A whole research brief."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["research"] = "research"
    name: str
    description: str = ""
    subjects: list[Subject] = Field(min_length=1)
    fields: dict[str, ResearchField] = Field(min_length=1)
    # the share of subjects that must have each required field filled
    completeness: float = Field(default=0.9, ge=0, le=1)
    sources: list[Source] = Field(min_length=1)
    review: ResearchReview = Field(default_factory=ResearchReview)
    link_hours: int = Field(default=72, ge=1, le=168)  # a presigned S3 link lives at most 7 days

    @model_validator(mode="after")
    def _check(self) -> Brief:
        problems = []
        for name, field in self.fields.items():
            field.name = name
        ids = [s.id for s in self.subjects]
        if len(set(ids)) != len(ids):
            problems.append(f"subject ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            problems.append(f"source names repeat: {sorted({n for n in names if names.count(n) > 1})}")
        for source in self.sources:
            wanted: set[str] = set()
            if isinstance(source, WebSource):
                wanted = {f for page in source.pages for _, f, _, _ in string.Formatter().parse(page) if f}
            elif isinstance(source, SqlSource):
                wanted = set(re.findall(r"(?<!:):([A-Za-z_]\w*)", source.query))
            for subject in self.subjects:
                missing = sorted(wanted - subject.terms().keys())
                if missing:
                    problems.append(f"source {source.name!r} needs {missing} of subject {subject.id!r}, "
                                    f"which has only {sorted(subject.terms())}")
                    break
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def required(self) -> list[str]:
        return [name for name, field in self.fields.items() if field.required]


def allowed(url: str, base: str) -> bool:
    """Whether ``url`` lies under the base URL ``base``: same scheme, host and port, and under its path."""
    u, b = urlsplit(url), urlsplit(base)
    if (u.scheme, u.hostname, u.port) != (b.scheme, b.hostname, b.port):
        return False
    prefix = b.path if b.path.endswith("/") else b.path + "/"
    return b.path in ("", "/") or u.path == b.path or u.path.startswith(prefix)


def _read(path: Path) -> dict[str, object]:
    text = path.read_text(encoding="utf-8-sig")
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise BriefError(f"{path}: a brief is a mapping of settings (name, subjects, fields, sources)")
    return data


def read_subjects_csv(path: Path) -> list[dict[str, object]]:
    """Subjects from a CSV file: columns ``id`` and ``name``; every other non-empty column is an identifier."""
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    if rows and not {"id", "name"} <= set(rows[0]):
        raise BriefError(f"{path}: a subjects CSV needs the columns id and name (found {sorted(rows[0])})")
    return [{"id": row["id"] or "", "name": row["name"] or "",
             "identifiers": {k: v for k, v in row.items() if k not in ("id", "name") and k and v}}
            for row in rows]


def load_brief(name_or_path: str | Path) -> Brief:
    """Read and check a brief (a path, or a name looked up in the process folders); every problem at once.

    A brief's review settings are found by its name in the process folders (``BPO_PROCESS_DIRS``): the
    agents of its review groups can work on its items only if it lives there.
    """
    path = Path(name_or_path)
    if path.suffix.lower() not in (".yaml", ".yml", ".json", ".csv"):
        try:
            path = spec_file(name_or_path, "research brief")
        except FileNotFoundError as exc:
            raise BriefError(str(exc)) from None
    if not path.is_file():
        raise BriefError(f"no brief at {path}")
    if path.suffix.lower() == ".csv":
        settings = next((p for p in (path.with_suffix(s) for s in (".yaml", ".yml", ".json")) if p.is_file()), None)
        if settings is None:
            raise BriefError(f"{path}: a CSV brief holds the subjects; its fields and sources go in "
                             f"{path.with_suffix('.yaml').name} beside it")
        data = {**_read(settings), "subjects": read_subjects_csv(path)}
        folder = settings.parent
    elif path.suffix.lower() in (".yaml", ".yml", ".json"):
        data = _read(path)
        folder = path.parent
        if isinstance(data.get("subjects"), str):
            data["subjects"] = read_subjects_csv(folder / str(data["subjects"]))
    else:
        raise BriefError(f"{path}: a brief is a YAML, JSON or CSV file")
    data.setdefault("name", path.stem)
    try:
        brief = Brief.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'brief'}: {e['msg']}" for e in exc.errors())
        raise BriefError(f"{path}: {reasons}") from None
    for source in brief.sources:  # a corpus folder is relative to the brief
        if isinstance(source, CorpusSource) and not source.path.startswith("s3://"):
            source.path = str((folder / source.path).resolve())
    return brief
