"""The ops database: review items, runs, batches and the audit trail."""
