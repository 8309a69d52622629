"""Research briefs: read from YAML, JSON or CSV, and every mistake refused at once, before any fetch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bpo.research.brief import BriefError, load_brief
from bpo.research.samples import make_web
from tests.web import serve

BASE = "http://127.0.0.1:8999"


def _brief(**changes: object) -> dict[str, object]:
    return {**make_web(2).brief(BASE), **changes}


def test_a_yaml_json_or_csv_brief_gives_the_same_subjects(tmp_path: Path) -> None:
    data = _brief()
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "b.json").write_text(json.dumps(data))
    (tmp_path / "c.csv").write_text("id,name,reg\nC00001,Northwind Industrial 1 LLC,R100001\n"
                                    "C00002,Globex Industrial 2 Ltd,R100002\n")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({k: v for k, v in data.items() if k != "subjects"}))
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(dict(data, subjects="c.csv")))
    subjects = [[(s.id, s.name, s.identifiers) for s in load_brief(tmp_path / name).subjects]
                for name in ("a.yaml", "b.json", "c.csv", "d.yaml")]
    assert subjects[0] == subjects[1] == subjects[2] == subjects[3]
    assert subjects[0][0] == ("C00001", "Northwind Industrial 1 LLC", {"reg": "R100001"})
    brief = load_brief(tmp_path / "a.yaml")
    assert brief.sources[0].urls(brief.subjects[0]) == [f"{BASE}/registry/R100001"]  # type: ignore[union-attr]
    assert brief.required == ["legal_name", "phone"] and brief.review.gate


def test_every_mistake_is_refused_at_once(tmp_path: Path) -> None:
    data = _brief()
    sources = list(data["sources"])  # type: ignore[call-overload]
    bad = dict(data, subjects=[], fields={**data["fields"], "rating": {"type": "stars"}},  # type: ignore[dict-item]
               sources=[dict(sources[0], pages=["http://elsewhere.example/{reg}"]),
                        {"kind": "sql", "name": "crm", "database": "sqlite://", "query": "SELECT 1 WHERE x = :duns"},
                        dict(sources[1], name="crm")])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(BriefError) as got:
        load_brief(path)
    message = str(got.value)
    assert "subjects: List should have at least 1 item" in message
    assert "fields.rating.type" in message
    assert "outside the allowlist" in message
    path.write_text(yaml.safe_dump(dict(data, sources=[{"kind": "sql", "name": "crm", "database": "sqlite://",
                                                        "query": "SELECT 1 WHERE x = :duns"}])))
    with pytest.raises(BriefError, match=r"needs \['duns'\] of subject 'C00001'"):
        load_brief(path)
    path.write_text(yaml.safe_dump(dict(data, subjects=[{"id": "a", "name": "A"}, {"id": "a", "name": "B"}])))
    with pytest.raises(BriefError, match="subject ids repeat"):
        load_brief(path)
    with pytest.raises(BriefError, match="no brief at"):
        load_brief(tmp_path / "missing.yaml")
    with pytest.raises(BriefError, match="no research brief 'nothing_like_it'"):
        load_brief("nothing_like_it")


def test_the_cli_refuses_a_brief_before_any_fetch(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bpo.cli import app

    with serve({}) as server:
        brief = make_web(2).brief(server.base)
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(dict(brief, fields={**brief["fields"], "rating": {"type": "stars"}})))
        got = CliRunner().invoke(app, ["run", "research-compilation", str(path)])
        assert got.exit_code == 1 and "fields.rating.type" in got.output
        assert not server.hits  # nothing was fetched, no run was started
