"""Where the processes come from: the deployments of ``prefect.yaml``, and the folders of specs and suites.

One list of processes: the CLI starts a flow by the entrypoint its deployment declares, loaded by
Prefect's own loader, as a worker would; ``bpo`` never imports ``flows``. The package carries
``prefect.yaml`` and the shipped suites as ``flows/prefect.yaml`` and ``flows/expectations``, links
to the top-level files of the checkout, so an installed (non-editable) package finds them too; an
entrypoint's path is relative to the folder holding ``flows/`` (the checkout, or site-packages).

Specs (``<name>.yaml``) and suites (``<suite>.json``) are looked up in ``BPO_PROCESS_DIRS``, in
order, the first match winning; unset, the shipped ``flows/specs`` and ``expectations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bpo.settings import Settings, get_settings

if TYPE_CHECKING:
    from prefect import Flow

ROOT = Path(__file__).resolve().parent.parent  # the checkout, or the site-packages the wheel went into
PROJECT_FILE = ROOT / "flows" / "prefect.yaml"
SHIPPED_DIRS = (ROOT / "flows" / "specs", (ROOT / "flows" / "expectations").resolve())


@dataclass(frozen=True)
class Deployment:
    name: str
    entrypoint: str  # "<path relative to ROOT>.py:<flow function>", as prefect.yaml declares it
    parameters: dict[str, Any]


def process_dirs(settings: Settings | None = None) -> list[Path]:
    """The folders searched for specs and suites, in order."""
    return list((settings or get_settings()).process_dirs or SHIPPED_DIRS)


def find_process_file(filename: str, what: str, settings: Settings | None = None) -> Path:
    """The first ``filename`` in the process folders; else an error naming the folders and what they hold."""
    dirs = process_dirs(settings)
    for folder in dirs:
        path = folder / filename
        if path.is_file():
            return path
    suffix = Path(filename).suffix
    known = sorted({p.stem for folder in dirs for p in folder.glob(f"*{suffix}")})
    raise FileNotFoundError(f"no {what} {Path(filename).stem!r} in BPO_PROCESS_DIRS "
                            f"(searched {', '.join(map(str, dirs))}); known: {', '.join(known) or 'none'}")


def spec_file(name_or_path: str | Path, what: str) -> Path:
    """A spec's file: a path to a YAML file, or a name looked up in the process folders (``-`` read as ``_``)."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = find_process_file(f"{str(name_or_path).replace('-', '_')}.yaml", what)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    return path.resolve()


def deployments() -> dict[str, Deployment]:
    """The deployments ``prefect.yaml`` declares, by name."""
    return _deployments(PROJECT_FILE.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _deployments(_mtime_ns: int) -> dict[str, Deployment]:
    config = yaml.safe_load(PROJECT_FILE.read_text(encoding="utf-8")) or {}
    return {d["name"]: Deployment(d["name"], d["entrypoint"], d.get("parameters") or {})
            for d in config.get("deployments") or []}


def load_flow(deployment: str) -> Flow[..., Any]:
    """The flow of a deployment, loaded from its entrypoint by Prefect's loader."""
    from prefect.flows import load_flow_from_entrypoint  # prefect is imported only by the commands that run flows

    known = deployments()
    if deployment not in known:
        raise KeyError(f"no deployment {deployment!r} in {PROJECT_FILE}; known: {', '.join(sorted(known))}")
    path, function = known[deployment].entrypoint.rsplit(":", 1)
    return load_flow_from_entrypoint(f"{ROOT / path}:{function}", use_placeholder_flow=False)
