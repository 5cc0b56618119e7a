-- advanced-rag: table privileges for the application and retention roles.
--
-- Run as the schema owner (audit_owner) AFTER `advanced-rag db upgrade` has created the
-- tables, and again after every upgrade that adds a table (GRANT is idempotent):
--
--   docker-compose --profile setup run --rm audit-grants          # the compose one-shot
--   psql -v ON_ERROR_STOP=1 -h HOST -U audit_owner -d rag -f deploy/postgres/grants.sql
--
-- ALTER DEFAULT PRIVILEGES cannot replace this file: it grants on every future table of the
-- schema at once and PostgreSQL refuses column lists there ("default privileges cannot be set
-- for columns"), so it cannot say "UPDATE (payload) ON audit_events" or "INSERT on these
-- tables only".
--
-- Names can be overridden with psql variables (defaults as in 01-audit-roles.sql):
--   -v app_role=... -v retention_role=... -v audit_schema=...
\set ON_ERROR_STOP on

\if :{?app_role}
\else
  \set app_role rag_app
\endif
\if :{?retention_role}
\else
  \set retention_role rag_retention
\endif
\if :{?audit_schema}
\else
  \set audit_schema audit
\endif

SET search_path = :"audit_schema";

BEGIN;

GRANT USAGE ON SCHEMA :"audit_schema" TO :"app_role", :"retention_role";

-- The hash chain (README "Audit trail"): append and read; never DELETE, TRUNCATE or TRIGGER.
GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO :"app_role";
GRANT SELECT, UPDATE ON audit_head TO :"app_role";      -- appends lock and move the head row
GRANT USAGE ON SEQUENCE audit_checkpoints_id_seq TO :"app_role";
GRANT SELECT ON audit_prunes TO :"app_role";            -- verifying a pruned chain reads it

-- The other tables `db upgrade` creates in the same schema, as the pipeline and the
-- ComplianceManager use them: query log and drift (written on every retrieve and ingest),
-- legal holds, document versions (lineage), subject keys (erasure), schema version.
GRANT SELECT, INSERT, UPDATE, DELETE ON query_log TO :"app_role";  -- DELETE: erasure
GRANT SELECT, INSERT, DELETE ON drift_corpus_sample, drift_reference TO :"app_role";
GRANT SELECT, INSERT ON drift_report TO :"app_role";
GRANT SELECT, INSERT, UPDATE ON legal_holds, document_versions, subject_keys TO :"app_role";
GRANT USAGE ON SEQUENCE query_log_id_seq, drift_corpus_sample_id_seq, drift_report_id_seq,
      document_versions_id_seq TO :"app_role";
GRANT SELECT ON advanced_rag_schema_version TO :"app_role";

-- Retention (and erasure of plaintext recorded before encryption was on). The retention role
-- is also a member of the application role (01-audit-roles.sql), since every run is itself
-- audited; on top of that: redaction (payload -> NULL only: the guard trigger refuses any
-- other change), pruning behind a signed prune point (the triggers refuse anything else) and
-- deleting expired drift reports.
GRANT UPDATE (payload), DELETE ON audit_events TO :"retention_role";
GRANT INSERT ON audit_prunes TO :"retention_role";
GRANT USAGE ON SEQUENCE audit_prunes_id_seq TO :"retention_role";
GRANT DELETE ON drift_report TO :"retention_role";

COMMIT;
