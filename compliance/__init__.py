"""Compliance tooling for advanced-rag: audit chain, retention, reports (built in later issues)."""
