from bpo.cli import app

app()
