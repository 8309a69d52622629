"""``bpo``: the one command a person types — stack, runs, review, database.

Each group of commands lives in its own module; importing them here registers them on ``app``.
"""

from bpo.cli import cleanup, demo, research, review, runs, stack, users  # noqa: F401  (registers the commands)
from bpo.cli.common import app

__all__ = ["app"]
