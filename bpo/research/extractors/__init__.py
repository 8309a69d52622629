"""Candidate values read out of one document, per format: ``html``, ``pdf``, ``tabular`` (CSV, SQL, tables).

Each format module turns a document's text into ``Finding``s (a field, the value as written, where
and the snippet); ``bpo.research.extract`` attributes them to subjects and normalizes them.
"""
