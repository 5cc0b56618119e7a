"""Compliance tooling for advanced-rag.

- :mod:`compliance.audit` — the append-only, hash-chained, tamper-evident audit store
  (SQLite or PostgreSQL), signed checkpoints and verification.
- Retention, legal holds and reports come with later issues.
"""
