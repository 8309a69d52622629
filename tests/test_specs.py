"""Process specs, their suites and the deployments: everything a process engineer declares must hold together."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bpo.quality import EXPECTATIONS_DIR, load_suite
from bpo.spec import SPECS_DIR, load_spec, process_spec_paths

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p.stem for p in process_spec_paths())


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


def test_an_unknown_spec_names_the_folders_searched_and_the_known_ones() -> None:
    with pytest.raises(FileNotFoundError, match="customer_onboarding") as caught:
        load_spec("payroll")
    assert str(SPECS_DIR) in str(caught.value) and str(EXPECTATIONS_DIR) in str(caught.value)


@pytest.fixture
def process_dirs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[Path]], None]]:
    from bpo.settings import get_settings

    def use(dirs: list[Path]) -> None:
        monkeypatch.setenv("BPO_PROCESS_DIRS", os.pathsep.join(map(str, dirs)))
        get_settings.cache_clear()

    yield use
    monkeypatch.delenv("BPO_PROCESS_DIRS", raising=False)
    get_settings.cache_clear()


def test_specs_and_suites_are_found_on_the_search_path_in_order(tmp_path: Path, process_dirs: Any) -> None:
    first, second = tmp_path / "client", tmp_path / "shared"
    for folder, description in ((first, "the client's"), (second, "the shared one")):
        folder.mkdir()
        spec = yaml.safe_load((SPECS_DIR / "vendor_setup.yaml").read_text())
        spec.update(name="acme-vendors", description=description, suite="acme_vendors")
        (folder / "acme_vendors.yaml").write_text(yaml.safe_dump(spec))
    suite = json.loads((EXPECTATIONS_DIR / "vendor_setup.json").read_text())
    (second / "acme_vendors.json").write_text(json.dumps({**suite, "name": "acme_vendors"}))
    process_dirs([first, second])
    spec = load_spec("acme-vendors")
    assert spec.description == "the client's"  # the first folder wins
    assert len(load_suite(spec.suite).expectations) == len(suite["expectations"])  # found in the second
    with pytest.raises(FileNotFoundError, match="acme_vendors") as caught:
        load_spec("customer_onboarding")  # the shipped folders are not searched once the path is set
    assert str(first) in str(caught.value) and str(second) in str(caught.value)


def test_a_missing_process_folder_is_refused(tmp_path: Path) -> None:
    from bpo.settings import Settings

    with pytest.raises(ValueError, match="BPO_PROCESS_DIRS: not a folder"):
        Settings(process_dirs=str(tmp_path / "nowhere"))


def test_every_prefect_yaml_deployment_loads_its_flow_by_its_entrypoint() -> None:
    from bpo.processes import PROJECT_FILE, deployments, load_flow

    assert PROJECT_FILE.resolve() == (ROOT / "prefect.yaml").resolve(), "the package's link to the top-level file"
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert config["deployments"] and set(deployments()) == {d["name"] for d in config["deployments"]}
    for deployment in config["deployments"]:
        flow = load_flow(deployment["name"])
        assert flow.name in (deployment["name"], "dispatch-inbox"), "a deployment is named after its flow"
        assert deployment["work_pool"]["name"] == "bpo-process"
