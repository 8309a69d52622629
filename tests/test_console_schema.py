"""schemathesis against the console's OpenAPI document: generated requests to every operation, no server error.

In process (ASGI), signed in with a supervisor's API token, on a fresh SQLite ops database holding a
few open items (so item paths meet real items as well as missing ones).
"""

from __future__ import annotations

import tempfile
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from bpo import users
from bpo.console.app import create_app
from bpo.db.session import upgrade
from bpo.settings import Settings
from tests.test_review import keep_open, make_item, store

pytestmark = pytest.mark.slow


def _app() -> Any:
    """The console on its own ops database, made when the module is collected (schemathesis reads the
    document then); a supervisor's token for the requests."""
    url = f"sqlite:///{tempfile.mkdtemp(prefix='bpo-schema-')}/ops.db"
    upgrade(url)
    s = Settings(ops_database_url=url)
    run_id = str(uuid.uuid4())
    store(url, [make_item(run_id, r) for r in range(2, 6)])
    keep_open(url, run_id)
    users.add_user(s, "fuzz", "a long enough password", "supervisor")
    TOKEN["Authorization"] = "Bearer " + users.issue_token(s, "fuzz")[1]
    return create_app(s)


TOKEN: dict[str, str] = {}
schema = schemathesis.openapi.from_asgi("/api/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_the_document_allows_gives_a_server_error(case: Any) -> None:
    case.call_and_validate(headers=TOKEN, checks=[not_a_server_error])
