"""Process specs, their suites and the deployments: everything a process engineer declares must hold together."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from bpo.quality import EXPECTATIONS_DIR, load_suite
from bpo.spec import SPECS_DIR, load_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p.stem for p in SPECS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", SPECS)
def test_every_spec_loads_and_names_an_existing_suite_covering_its_fields(name: str) -> None:
    spec = load_spec(name)
    suite = load_suite(spec.suite)
    columns = {getattr(e, "column", None) for e in suite.expectations}
    required = {f for f, field in spec.fields.items() if field.required}
    assert required <= columns, f"required fields without an expectation: {required - columns}"
    assert all(k in spec.fields for k in spec.target.key)


def test_every_suite_file_is_named_by_a_spec() -> None:
    named = {load_spec(n).suite for n in SPECS}
    assert {p.stem for p in EXPECTATIONS_DIR.glob("*.json")} <= named


def test_a_spec_with_an_unknown_key_field_is_refused(tmp_path: Path) -> None:
    bad = yaml.safe_load((SPECS_DIR / "vendor_setup.yaml").read_text())
    bad["target"]["key"] = ["vendor_id"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="vendor_id"):
        load_spec(path)


def test_an_unknown_spec_names_the_known_ones() -> None:
    with pytest.raises(FileNotFoundError, match="customer_onboarding"):
        load_spec("payroll")


def test_every_prefect_yaml_entrypoint_imports_its_flow() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert config["deployments"]
    for deployment in config["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert flow.name in (deployment["name"], "dispatch-inbox"), "a deployment is named after its flow"
        assert deployment["work_pool"]["name"] == "bpo-process"
