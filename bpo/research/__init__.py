"""Research compilation: gather sources, extract cited facts, reconcile them by source trust, publish.

Pure work, no Prefect: ``brief`` (what to compile), ``model`` (documents, citations, candidates),
``fetch`` (the guarded HTTP client), ``gather`` (every source once per run, raw bytes to S3),
``extract`` (candidate facts with citations), ``reconcile`` (truth discovery), ``publish``.
"""
