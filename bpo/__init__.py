"""nonvoice-bpo: back-office processes as Prefect flows."""

__version__ = "0.1.0"
