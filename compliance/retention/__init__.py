"""Retention, legal hold and erasure.

- :mod:`.holds` — legal holds by tenant, document, subject or time range; held records are
  skipped by retention and erasure.
- :mod:`.policy` — retention decisions as plain functions: per record class, what is due, what
  holds keep, the typed :class:`~.policy.RetentionPlan`.
- :mod:`.job` — :func:`~.job.run_retention` reads, plans, applies and records a run (the
  scheduler's daily ``retention`` job is :func:`~.job.scheduled_retention`); pruning of audit
  events goes through signed prune points (:mod:`compliance.audit.pruning`).

Example::

    result = await run_retention(load_config("config.yaml"), now=datetime.now(UTC), dry_run=True)
    print(result.plan.to_dict())
"""
