"""A generated web of company profiles with a known truth: for the flow's tests, the benchmark and a demo.

Six web sources describe each subject, each in its own markup, with its own reliability: a registry
(schema.org JSON-LD), a chamber of commerce (a label/value table), a directory (a definition list), a news
site (labelled text) and two aggregators that **copy the directory**, its errors included (a table, and
microdata). A share of the fields (``conflict_share``) is contested: there the less reliable sources state
wrong values, each its own; elsewhere every source states the truth, in its own format (phones written
nationally or internationally, employee counts with or without separators). A share of the pages
(``broken_share``) answer with an error. Nothing here fetches anything: ``make_web`` returns the pages.
"""

from __future__ import annotations

import dataclasses
import html
import json
import random
from typing import Any

from bpo.research.brief import Subject

FIELDS: dict[str, dict[str, Any]] = {
    "legal_name": {"type": "organisation", "required": True, "labels": ["registered name", "company name"],
                   "properties": ["legalName"]},
    "phone": {"type": "phone", "required": True, "labels": ["telephone", "tel"], "properties": ["telephone"],
              "country": "US"},
    "email": {"type": "email", "labels": ["e-mail", "contact email"], "properties": ["email"]},
    "founded": {"type": "year", "labels": ["founded", "established", "year founded"], "properties": ["foundingDate"],
                "minimum": 1800, "maximum": 2100},
    "employees": {"type": "count", "labels": ["employees", "headcount", "staff"], "properties": ["numberOfEmployees"],
                  "minimum": 0},
}
LABELS = {"legal_name": "Registered name", "phone": "Telephone", "email": "E-mail", "founded": "Founded",
          "employees": "Employees"}
# independent sources: (name, markup, path template, chance of a wrong value on a contested field, trust prior)
SOURCES = [("registry", "jsonld", "/registry/{reg}", 0.05, 0.8), ("chamber", "table", "/chamber/{reg}.html", 0.2, 0.6),
           ("directory", "dl", "/directory/{slug}", 0.6, 0.6), ("news", "text", "/news/{reg}", 0.45, 0.5)]
COPIERS = [("mirror", "table", "/mirror/{slug}"), ("aggregator", "microdata", "/aggregator/{reg}")]  # of directory
WORDS = ["Acme", "Northwind", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne",
         "Soylent", "Hooli", "Vandelay", "Massive", "Dynamic", "Pied", "Piper", "Aperture", "Black", "Mesa"]
KINDS = ["Industrial", "Components", "Logistics", "Foods", "Textiles", "Analytics", "Metals", "Pharma"]
SUFFIXES = ["Inc", "LLC", "Ltd", "Corp", "GmbH"]


@dataclasses.dataclass(frozen=True)
class Page:
    status: int
    content_type: str
    body: bytes


@dataclasses.dataclass
class Web:
    subjects: list[dict[str, Any]]  # id, name, identifiers
    truth: dict[tuple[str, str], str]  # (subject id, field) -> the true value, as the registry writes it
    stated: dict[tuple[str, str, str], str]  # (source, subject id, field) -> the value the source states
    pages: dict[str, Page]  # path -> page
    contested: set[tuple[str, str]]  # (subject id, field) where the less reliable sources err
    layout: dict[str, tuple[str, str, str, str]] = dataclasses.field(default_factory=dict)  # path -> (source,
    # markup, subject id, subject name)
    broken: dict[str, Page] = dataclasses.field(default_factory=dict)  # pages that answer with an error

    def render(self) -> None:
        """Every page from what its source states (the same page for the same statements: formats are seeded)."""
        for path, (source, markup, sid, name) in self.layout.items():
            if path in self.broken:
                self.pages[path] = self.broken[path]
                continue
            rnd = random.Random(path)
            shown = {f: _styled(rnd, f, self.stated[(source, sid, f)]) for f in FIELDS
                     if (source, sid, f) in self.stated}
            self.pages[path] = Page(200, "text/html; charset=utf-8", _render(markup, name, shown))

    def state(self, subject_id: str, field: str, value: str | None, *, truth: bool = True) -> None:
        """Every source now states ``value`` for the field (None: none states it); the truth follows unless
        ``truth`` is False (a fact no source states, that an agent finds elsewhere)."""
        for source in [s[0] for s in SOURCES] + [c[0] for c in COPIERS]:
            self.stated.pop((source, subject_id, field), None)
            if value is not None:
                self.stated[(source, subject_id, field)] = value
        if not truth:
            pass
        elif value is None:
            self.truth.pop((subject_id, field), None)
        else:
            self.truth[(subject_id, field)] = value
        self.render()

    def brief(self, base: str, **settings: Any) -> dict[str, Any]:
        """A brief over this web served at ``base`` (an http://127.0.0.1:port the caller allowlists)."""
        trust = {name: prior for name, _, _, _, prior in SOURCES} | {name: 0.6 for name, _, _ in COPIERS}
        sources = [{"kind": "web", "name": name, "trust": trust[name], "allow": [f"{base}/{name}/"],
                    "pages": [f"{base}{path}"], "private_hosts": ["127.0.0.1"], "robots": False,
                    "requests_per_second": 1000, "concurrency": 8, "retries": 1, "read_timeout": 5}
                   for name, path in [(s[0], s[2]) for s in SOURCES] + [(c[0], c[2]) for c in COPIERS]]
        return {"kind": "research", "name": "company-profiles", "description": "Company profiles",
                "completeness": 0.8, "subjects": self.subjects, "fields": FIELDS, "sources": sources, **settings}


AREA_CODES = [202, 212, 213, 305, 312, 404, 415, 503, 512, 602, 617, 646, 702, 713, 718, 801, 858, 917, 971]


def _phone(rnd: random.Random) -> str:
    return f"+1{rnd.choice(AREA_CODES)}{rnd.randint(234, 899)}{rnd.randint(1000, 9999)}"


def _truth(rnd: random.Random, i: int) -> tuple[str, dict[str, str]]:
    name = f"{WORDS[i % len(WORDS)]} {KINDS[(i // len(WORDS)) % len(KINDS)]} {i} {SUFFIXES[i % len(SUFFIXES)]}"
    domain = f"{WORDS[i % len(WORDS)].lower()}{i}.example.com"
    return name, {"legal_name": name, "phone": _phone(rnd), "email": f"info@{domain}",
                  "founded": str(rnd.randint(1900, 2022)), "employees": str(rnd.randint(5, 90_000))}


def _wrong(rnd: random.Random, field: str, true: str) -> str:
    """A plausible wrong value: another number, a year off, a headcount off, a sister company's name."""
    if field == "phone":
        return true[:-4] + f"{(int(true[-4:]) + rnd.randint(1, 9998)) % 10000:04d}"
    if field == "email":  # independent errors seldom agree; copied ones always do
        box = rnd.choice(["sales", "contact", "hello", "office", "admin"])
        return true.replace("info@", f"{box}{rnd.randint(1, 99)}@")
    if field == "founded":
        return str(int(true) + rnd.choice([-1, 1]) * rnd.randint(1, 15))
    if field == "employees":
        return str(max(1, int(true) + rnd.randint(1, 500) * rnd.choice([-1, 1])))
    return true.rsplit(" ", 1)[0] + " " + rnd.choice([s for s in SUFFIXES if not true.endswith(s)])


def _styled(rnd: random.Random, field: str, value: str) -> str:
    """The value as a source writes it: the same fact, another format."""
    if field == "phone":
        n = value[2:]
        return rnd.choice([f"({n[:3]}) {n[3:6]}-{n[6:]}", f"+1 {n[:3]}-{n[3:6]}-{n[6:]}", f"{n[:3]}.{n[3:6]}.{n[6:]}",
                           value])
    if field == "employees":
        return rnd.choice([value, f"{int(value):,}"])
    return value


def _render(markup: str, name: str, values: dict[str, str]) -> bytes:
    title = html.escape(name)
    if markup == "jsonld":
        props = {"legal_name": "legalName", "phone": "telephone", "email": "email", "founded": "foundingDate",
                 "employees": "numberOfEmployees"}
        data = {"@context": "https://schema.org", "@type": "Organization", "name": name,
                **{props[f]: v for f, v in values.items()}}
        script = json.dumps(data).replace("</", "<\\/")  # </ would end the script element early; JSON allows <\/
        body = f'<script type="application/ld+json">{script}</script><h1>{title}</h1><p>Registry record.</p>'

    elif markup == "table":
        rows = "".join(f"<tr><th>{LABELS[f]}</th><td>{html.escape(v)}</td></tr>" for f, v in values.items())
        body = f"<h1>{title}</h1><table>{rows}</table>"
    elif markup == "dl":
        rows = "".join(f"<dt>{LABELS[f]}</dt><dd>{html.escape(v)}</dd>" for f, v in values.items())
        body = f"<h1>{title}</h1><dl>{rows}</dl>"
    elif markup == "microdata":
        props = {"legal_name": "legalName", "phone": "telephone", "email": "email", "founded": "foundingDate",
                 "employees": "numberOfEmployees"}
        rows = "".join(f'<li>{LABELS[f]}: <span itemprop="{props[f]}">{html.escape(v)}</span></li>'
                       for f, v in values.items())
        body = (f'<div itemscope itemtype="https://schema.org/Organization"><h1 itemprop="name">{title}</h1>'
                f"<ul>{rows}</ul></div>")
    else:
        lines = "".join(f"<p>{LABELS[f]}: {html.escape(v)}</p>" for f, v in values.items())
        body = f"<article><h1>{title}</h1><p>Our profile of {title}.</p>{lines}</article>"
    decoy = "<script>document.title = 'Telephone: +1 999 999 9999';</script>"  # a script is never read as content
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>{decoy}</head>'
            f"<body>{body}</body></html>").encode()


def make_web(subjects: int, *, seed: int = 1, conflict_share: float = 0.2, broken_share: float = 0.05,
             coverage: float = 0.85) -> Web:
    """``subjects`` companies, their truth, and every source's page about each of them."""
    rnd = random.Random(seed)
    web = Web([], {}, {}, {}, set())
    for i in range(1, subjects + 1):
        sid = f"C{i:05d}"
        name, values = _truth(rnd, i)
        reg = f"R{100000 + i}"
        slug = Subject(id=sid, name=name).terms()["slug"]  # as the brief fills {slug} in a page template
        web.subjects.append({"id": sid, "name": name, "identifiers": {"reg": reg}})
        for field, value in values.items():
            web.truth[(sid, field)] = value
            if rnd.random() < conflict_share:
                web.contested.add((sid, field))
        for source, markup, path, error, _ in SOURCES:
            for field, value in values.items():
                if field != "legal_name" and rnd.random() > coverage:
                    continue  # this source does not state it
                wrong = (sid, field) in web.contested and rnd.random() < error
                web.stated[(source, sid, field)] = _wrong(rnd, field, value) if wrong else value
            web.layout[path.format(reg=reg, slug=slug)] = (source, markup, sid, name)
            if source == "directory":
                for copier, copy_markup, copy_path in COPIERS:
                    for field in values:
                        if (source, sid, field) in web.stated:
                            web.stated[(copier, sid, field)] = web.stated[(source, sid, field)]
                    web.layout[copy_path.format(reg=reg, slug=slug)] = (copier, copy_markup, sid, name)
    for path in web.layout:
        if rnd.random() < broken_share:
            web.broken[path] = rnd.choice([Page(500, "text/plain", b"internal error"), Page(404, "text/plain", b"gone"),
                                           Page(200, "application/pdf", b"%PDF-1.4 truncated")])
    web.render()
    return web
