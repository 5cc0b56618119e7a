-- advanced-rag: PostgreSQL roles and schema for the audit database.
--
-- The postgres image runs this file once, as the superuser, inside $POSTGRES_DB, when it
-- initialises an EMPTY data volume (/docker-entrypoint-initdb.d). To apply it to an existing
-- server, run it yourself as a superuser (it is idempotent):
--
--   AUDIT_OWNER_PASSWORD=... RAG_APP_PASSWORD=... RAG_RETENTION_PASSWORD=... \
--     psql -v ON_ERROR_STOP=1 -h HOST -U postgres -d rag -f deploy/postgres/init/01-audit-roles.sql
--
-- Roles (README "Audit trail", compliance/audit/__init__.py):
--   audit_owner    owns schema "audit"; runs `advanced-rag db upgrade` (tables, triggers)
--   rag_app        the application: INSERT/SELECT, never owner (an owner can drop triggers)
--   rag_retention  the retention job: payload redaction and pruning behind a signed point
-- The table GRANTs cannot be given here: the tables do not exist until `db upgrade` has run,
-- and ALTER DEFAULT PRIVILEGES cannot express them (it grants on every future table of the
-- schema and has no column list, so no "UPDATE (payload)"). Run deploy/postgres/grants.sql as
-- audit_owner after every `db upgrade` (docs/production.md).
--
-- Passwords come from the environment (psql \getenv, PostgreSQL 15+ client), never from this
-- file. Role and schema names can be overridden with psql variables:
--   -v owner_role=... -v app_role=... -v retention_role=... -v audit_schema=...
--   -v scheduler_schema=...
\set ON_ERROR_STOP on

\if :{?owner_role}
\else
  \set owner_role audit_owner
\endif
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
\if :{?scheduler_schema}
\else
  \set scheduler_schema scheduler
\endif

\set owner_password ''
\set app_password ''
\set retention_password ''
\getenv owner_password AUDIT_OWNER_PASSWORD
\getenv app_password RAG_APP_PASSWORD
\getenv retention_password RAG_RETENTION_PASSWORD

SELECT :'owner_password' = '' OR :'app_password' = '' OR :'retention_password' = ''
       AS missing_password \gset
\if :missing_password
  DO $$ BEGIN
    RAISE EXCEPTION 'set AUDIT_OWNER_PASSWORD, RAG_APP_PASSWORD and RAG_RETENTION_PASSWORD';
  END $$;
\endif

-- Login roles, created only if missing (an existing role keeps its password).
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'owner_role', :'owner_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner_role') \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app_role', :'app_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_role') \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'retention_role', :'retention_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'retention_role') \gexec

-- The schema, owned by the migration role; no one else may create objects in it.
CREATE SCHEMA IF NOT EXISTS :"audit_schema" AUTHORIZATION :"owner_role";
REVOKE ALL ON SCHEMA :"audit_schema" FROM PUBLIC;
-- `advanced-rag db upgrade` runs CREATE SCHEMA IF NOT EXISTS, which PostgreSQL refuses
-- without CREATE on the database even when the schema exists.
GRANT CREATE ON DATABASE :"DBNAME" TO :"owner_role";

-- Retention runs are audited like any other call: the retention role has the application's
-- privileges too (deploy/postgres/grants.sql adds redaction and pruning on top).
GRANT :"app_role" TO :"retention_role";

-- The scheduler (`advanced-rag scheduler run`, which runs the retention job) connects as the
-- retention role with scheduler.url set (deploy/config.production.yaml). Its APScheduler job
-- table and its lock row live in a schema of its own, first on that role's search path, so it
-- needs no CREATE right on the audit schema or the database.
CREATE SCHEMA IF NOT EXISTS :"scheduler_schema" AUTHORIZATION :"retention_role";
REVOKE ALL ON SCHEMA :"scheduler_schema" FROM PUBLIC;
ALTER ROLE :"retention_role" IN DATABASE :"DBNAME" SET search_path = :"scheduler_schema";
