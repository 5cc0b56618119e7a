"""Drift monitoring: is the system still being asked, and still indexing, what it was tuned on?

- :mod:`.store` — the query log (one row per retrieval, linked to its audit event), corpus
  samples taken at ingest, named reference snapshots and the history of weekly verdicts.
- :mod:`.stats` — the statistical tests (pure numpy/scipy): MMD, PCA + KS, a domain
  classifier, KS and Anderson–Darling on scores, chi-square on categorical shares, PSI.
- :mod:`.detector` — :func:`~.detector.detect`: the test battery and its Holm–Bonferroni
  verdict, as a typed :class:`~.detector.DriftReport`.
- :mod:`.weekly` — the weekly report (JSON, Markdown, HTML with charts) and its audit event.
"""
