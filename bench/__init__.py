"""Benchmarks of the product's flows against a no-orchestration floor (see bench/README.md)."""
