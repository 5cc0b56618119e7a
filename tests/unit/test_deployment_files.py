"""The deployment files: docker-compose.yml checked by docker-compose itself (and shown to fail
when broken), .env.example naming every variable with placeholder secrets only, the production
config loading, and the PostgreSQL role scripts run for real on a throwaway database: roles,
`db upgrade` as the owner, the grants, then the application, retention and scheduler roles
doing their work through the library and nothing more."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from advanced_rag.config import PipelineConfig, load_config, validate_config
from advanced_rag.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
PROD_CONFIG = REPO / "deploy" / "config.production.yaml"
INIT_SQL = REPO / "deploy" / "postgres" / "init" / "01-audit-roles.sql"
GRANTS_SQL = REPO / "deploy" / "postgres" / "grants.sql"
DEPLOY_TEXT_FILES = (COMPOSE, ENV_EXAMPLE, PROD_CONFIG, INIT_SQL, GRANTS_SQL,
                     REPO / "docs" / "production.md")
PG_ENV = "AUDIT_TEST_POSTGRES_URL"
IN_CI = os.environ.get("CI") == "true"

# ${VAR}, ${VAR:-default}, ${VAR:?message}; "$${" is compose's escape for a literal "${".
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?-][^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$|KEK|SIGNING")


def missing_tool(name: str, why: str) -> None:
    """Skip without the tool, except in CI, where it is installed and must run."""
    if IN_CI:
        pytest.fail(f"{name} is not installed but CI=true: {why}")
    pytest.skip(f"{name} is not installed ({why})")


def uncommented(path: Path) -> str:
    """The file without its whole-line comments (neither tool interpolates comments)."""
    return "\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                     if not line.lstrip().startswith("#"))


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), f".env.example:{number}: {line!r}"
        assert name not in values, f".env.example:{number}: {name} twice"
        values[name] = value
    return values


# -- docker-compose.yml, checked by docker-compose 1.29 (Debian's package) ---------------------


def docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        missing_tool("docker-compose", "apt-get install docker-compose; .ci/run installs it so "
                     "CI validates docker-compose.yml")
    assert exe is not None
    return exe


def compose(*args: str, compose_file: Path = COMPOSE, env_file: Path = ENV_EXAMPLE,
            cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in env_example()}  # .env.example rules
    return subprocess.run([docker_compose(), "-f", str(compose_file), "--env-file", str(env_file),
                           *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def test_docker_compose_accepts_the_compose_file() -> None:
    done = compose("config", "-q")
    assert done.returncode == 0, done.stderr
    done = compose("--profile", "setup", "config")
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    services = resolved["services"]
    assert set(services) == {"etcd", "minio", "milvus", "postgres", "audit-grants"}
    assert services["milvus"]["image"] == "milvusdb/milvus:v2.6.17"
    assert services["milvus"]["command"] == ["milvus", "run", "standalone"]
    assert services["milvus"]["environment"]["ETCD_ENDPOINTS"] == "etcd:2379"
    assert services["milvus"]["environment"]["MINIO_ADDRESS"] == "minio:9000"
    assert services["postgres"]["image"].startswith("postgres:16.")
    for name, service in services.items():
        image = service["image"]
        assert re.search(r":(v?\d|RELEASE\.)[\w.-]*$", image) and not image.endswith(":latest"), (
            f"{name}: pin an exact image tag, not {image!r}")
        if name != "audit-grants":  # the one-shot has no long-running process to check
            assert service["healthcheck"]["test"], f"{name} has no health check"
            assert service["restart"] == "unless-stopped"
    assert {d: c["condition"] for d, c in services["milvus"]["depends_on"].items()} == {
        "etcd": "service_healthy", "minio": "service_healthy"}
    assert services["audit-grants"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Data in named volumes; the only host paths are the read-only deploy scripts.
    assert set(resolved["volumes"]) == {"etcd-data", "minio-data", "milvus-data",
                                        "postgres-data"}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target, *mode = volume.split(":") if isinstance(volume, str) else (
                volume["source"], volume["target"], "ro" if volume.get("read_only") else "rw")
            if source in resolved["volumes"]:
                continue
            assert Path(source).is_relative_to(REPO / "deploy") and mode == ["ro"], (
                f"{name}: {volume!r} is a bind mount that is not a read-only deploy/ file")
            assert Path(source).exists(), f"{name}: {source} does not exist"
    # Published ports stay on the host unless .env says otherwise.
    for name, service in services.items():
        for port in service.get("ports", []):
            host = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
            assert host == "127.0.0.1", f"{name}: {port} is published beyond this host"


BROKEN = {
    "an unknown key": ("    restart: unless-stopped\n", "    restartt: unless-stopped\n",
                       "Unsupported config option"),
    "a value of the wrong type": ("      retries: 3\n", "      retries: three\n",
                                  "not a valid integer"),
    "an undeclared named volume": ("      - etcd-data:/etcd\n", "      - etcd-dat:/etcd\n",
                                   "no declaration was found"),
    "an unknown depends_on condition": ("condition: service_healthy", "condition: service_up",
                                        "depends_on"),
    "a dependency on a missing service": ("      etcd:\n        condition", "      etcx:\n"
                                          "        condition", "which is undefined"),
}


@pytest.mark.parametrize("fault", sorted(BROKEN))
def test_docker_compose_refuses_a_broken_copy(fault: str, tmp_path: Path) -> None:
    """The check is not a rubber stamp: each fault alone makes docker-compose fail."""
    old, new, message = BROKEN[fault]
    text = COMPOSE.read_text(encoding="utf-8")
    assert old in text, f"the compose file no longer contains {old!r}"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new), encoding="utf-8")
    done = compose("config", "-q", compose_file=broken, cwd=tmp_path)
    assert done.returncode != 0, f"docker-compose accepted {fault}"
    assert message in done.stderr + done.stdout


@pytest.mark.parametrize("variable", ["POSTGRES_PASSWORD", "RAG_APP_PASSWORD",
                                      "MILVUS_ROOT_PASSWORD", "MINIO_ROOT_PASSWORD"])
def test_docker_compose_refuses_to_run_without_a_secret(variable: str, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env_example().items() if k != variable),
                        encoding="utf-8")
    done = compose("config", "-q", env_file=env_file)
    assert done.returncode != 0 and f"set {variable} in .env" in done.stderr


# -- .env.example, the production config, and secrets ------------------------------------------


def test_env_example_names_every_variable_the_deployment_reads() -> None:
    names = set(env_example())
    used = {path.name: set(VARIABLE.findall(uncommented(path))) for path in (COMPOSE, PROD_CONFIG)}
    for file, variables in used.items():
        assert variables and variables <= names, f"{file} reads {variables - names}, not in .env.example"
    # The init script reads its passwords with \getenv; the postgres service must pass them.
    getenv = set(re.findall(r"^\\getenv \w+ (\w+)$", INIT_SQL.read_text(encoding="utf-8"), re.M))
    assert getenv == {"AUDIT_OWNER_PASSWORD", "RAG_APP_PASSWORD", "RAG_RETENTION_PASSWORD"}
    postgres = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["postgres"]
    assert getenv <= set(postgres["environment"])
    # What the config names as environment variables (secrets by name) is listed too.
    config = production_config(env_example())
    for name in (config.milvus.token_env, config.audit.signing_key_env,
                 config.erasure.key_encryption_key_env, "PGPASSWORD"):
        assert name in names


def test_no_real_looking_secret_is_committed() -> None:
    for name, value in env_example().items():
        if SECRET_NAME.search(name):
            assert all(part.startswith("change-me") for part in value.split(":")), (
                f".env.example: {name} must be a change-me placeholder, not {value!r}")
    compose_text = COMPOSE.read_text(encoding="utf-8")
    for service in yaml.safe_load(compose_text)["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key) or key.startswith("MINIO_ROOT"):
                assert VARIABLE.fullmatch(str(value)), f"{key} must come from .env, not the file"
    high_entropy = re.compile(r"(?<![\w/.-])(?=[A-Za-z0-9+/_-]*\d)(?=[A-Za-z0-9+/_-]*[A-Z])"
                              r"[A-Za-z0-9+/_-]{32,}={0,2}|\b[0-9a-f]{40,}\b")
    for path in DEPLOY_TEXT_FILES:
        text = path.read_text(encoding="utf-8")
        assert not high_entropy.search(text), f"{path.name}: {high_entropy.search(text)}"
        assert not re.search(r"[:=]\s*['\"]?minioadmin", text), f"{path.name}: a default login"
        assert "BEGIN PRIVATE KEY" not in text, path.name
        assert not re.search(r"PASSWORD\s+'[^'…]", text), f"{path.name} has a literal password"


def production_config(env: dict[str, str], **overrides: str) -> PipelineConfig:
    saved = dict(os.environ)
    try:
        os.environ.update({**env, **overrides})
        for name in [k for k, v in overrides.items() if v == ""]:
            del os.environ[name]
        return load_config(PROD_CONFIG)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_production_config_points_at_the_compose_services() -> None:
    from sqlalchemy.engine import make_url

    config = production_config(env_example())
    assert config.milvus.uri == "http://localhost:19530" and not config.milvus.is_lite
    assert (config.milvus.num_shards, config.milvus.num_partitions) == (1, 16)
    assert config.milvus.token_env == "MILVUS_TOKEN"
    url = make_url(config.audit.url or "")
    assert (url.drivername, url.username, url.host, url.port, url.database) == (
        "postgresql+psycopg", "rag_app", "localhost", 5432, "rag")
    assert url.password is None  # libpq reads PGPASSWORD: the URL is recorded in the audit log
    assert (config.audit.db_schema, config.audit.create) == ("audit", False)
    assert config.audit.checkpoint_every and config.audit.anchor
    assert not config.scheduler.url
    inside = production_config(env_example(), ADVANCED_RAG_MILVUS_URI="http://milvus:19530",
                               POSTGRES_HOST="postgres")
    assert inside.milvus.uri == "http://milvus:19530"
    assert make_url(inside.audit.url or "").host == "postgres"
    scheduler = production_config(
        env_example(), ADVANCED_RAG_DB_ROLE="rag_retention",
        ADVANCED_RAG_SCHEDULER_URL="postgresql+psycopg://rag_retention@localhost:5432/rag")
    assert make_url(scheduler.audit.url or "").username == "rag_retention"
    assert make_url(scheduler.scheduler.url or "").username == "rag_retention"


def test_production_config_needs_its_anchor_and_records_no_secret() -> None:
    with pytest.raises(ConfigError, match="ADVANCED_RAG_AUDIT_ANCHOR"):
        production_config(env_example(), ADVANCED_RAG_AUDIT_ANCHOR="")
    config = production_config(env_example())
    recorded = json.dumps(config.model_dump(mode="json", by_alias=True))  # config_loaded
    for name, value in env_example().items():
        if SECRET_NAME.search(name):
            assert value not in recorded, f"the value of {name} would be in the audit log"


# -- the PostgreSQL scripts, for real ----------------------------------------------------------


def psql_or_skip() -> str:
    exe = shutil.which("psql")
    if exe is None:
        missing_tool("psql", "the PostgreSQL client runs the role scripts")
    assert exe is not None
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    major = int(re.search(r"(\d+)\.\d+", version).group(1))  # type: ignore[union-attr]
    if major < 15:
        pytest.skip(f"psql {major} has no \\getenv (PostgreSQL 15+ client needed)")
    return exe


@dataclass
class Provisioned:
    """A throwaway database set up the way docs/production.md says: init script, db upgrade
    as the owner, grants.sql as the owner."""

    server: str       # SQLAlchemy URL of the test server's superuser, any database
    database: str
    roles: dict[str, str]      # owner / app / retention -> role name
    passwords: dict[str, str]
    tmp: Path

    def url(self, who: str, *, driver: str = "postgresql+psycopg") -> str:
        from sqlalchemy.engine import make_url

        base = make_url(self.server).set(drivername=driver, database=self.database)
        if who != "superuser":
            base = base.set(username=self.roles[who], password=self.passwords[who])
        return base.render_as_string(hide_password=False)

    def psql(self, who: str, script: Path, *, env: dict[str, str] | None = None,
             variables: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        args = [psql_or_skip(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                self.url(who, driver="postgresql")]
        for key, value in (variables or {}).items():
            args += ["-v", f"{key}={value}"]
        return subprocess.run([*args, "-f", str(script)], capture_output=True, text=True,
                              timeout=120, env={**os.environ, **(env or {})})

    def init_variables(self) -> dict[str, str]:
        return {"owner_role": self.roles["owner"], "app_role": self.roles["app"],
                "retention_role": self.roles["retention"]}

    def password_env(self) -> dict[str, str]:
        return {"AUDIT_OWNER_PASSWORD": self.passwords["owner"],
                "RAG_APP_PASSWORD": self.passwords["app"],
                "RAG_RETENTION_PASSWORD": self.passwords["retention"]}

    def sql(self, who: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url(who, driver="postgresql"), autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return list(cursor.fetchall()) if cursor.description else []

    def config(self, who: str, **sections: Any) -> PipelineConfig:
        audit = {"url": self.url(who), "schema": "audit", "create": False}
        return validate_config({"data_dir": str(self.tmp / who),
                                "milvus": {"uri": str(self.tmp / "milvus.db")},
                                "chunking": {"max_tokens": 64, "min_tokens": 4},
                                **sections, "audit": {**audit, **sections.get("audit", {})}})


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    import psycopg
    from sqlalchemy.engine import make_url

    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(f"set {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    psql_or_skip()
    suffix = uuid.uuid4().hex[:8]
    db = Provisioned(server=server, database=f"deploytest_{suffix}",
                     roles={"owner": f"audit_owner_{suffix}", "app": f"rag_app_{suffix}",
                            "retention": f"rag_retention_{suffix}"},
                     passwords={k: uuid.uuid4().hex for k in ("owner", "app", "retention")},
                     tmp=tmp_path_factory.mktemp("deploy"))
    admin = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db.database}"')
    try:
        yield db
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db.database}" WITH (FORCE)')
            for role in db.roles.values():
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(scope="module")
def installed(provisioned: Provisioned) -> Provisioned:
    """Roles and schemas by the init script, tables by `db upgrade` as the owner, grants."""
    from compliance.migrations import upgrade

    db = provisioned
    done = db.psql("superuser", INIT_SQL, env=db.password_env(), variables=db.init_variables())
    assert done.returncode == 0, done.stderr
    assert upgrade(db.config("owner")) == "0001"
    done = db.psql("owner", GRANTS_SQL, variables={"app_role": db.roles["app"],
                                                   "retention_role": db.roles["retention"]})
    assert done.returncode == 0, done.stderr
    return db


@pytest.mark.postgres
def test_init_script_needs_every_password_and_is_idempotent(provisioned: Provisioned) -> None:
    db = provisioned

    def roles() -> list[tuple[Any, ...]]:
        return db.sql("superuser", "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                      (list(db.roles.values()),))

    before = roles()
    partial = db.password_env()
    del partial["RAG_RETENTION_PASSWORD"]
    done = db.psql("superuser", INIT_SQL, env=partial, variables=db.init_variables())
    assert done.returncode != 0 and "RAG_RETENTION_PASSWORD" in done.stderr
    assert roles() == before  # it stopped before creating anything
    for _ in range(2):  # a second run changes nothing and does not fail
        done = db.psql("superuser", INIT_SQL, env=db.password_env(),
                       variables=db.init_variables())
        assert done.returncode == 0, done.stderr
    schemas = dict(db.sql("superuser", "SELECT nspname, pg_get_userbyid(nspowner) FROM "
                          "pg_namespace WHERE nspname IN ('audit', 'scheduler')"))
    assert schemas == {"audit": db.roles["owner"], "scheduler": db.roles["retention"]}
    [(member,)] = db.sql("superuser", "SELECT pg_has_role(%s, %s, 'USAGE')",
                         (db.roles["retention"], db.roles["app"]))
    assert member


@pytest.mark.postgres
def test_default_privileges_cannot_express_the_grants(installed: Provisioned) -> None:
    """Why grants.sql is a separate step after `db upgrade`: PostgreSQL refuses column lists
    in default privileges (retention may only UPDATE the payload column)."""
    import psycopg

    db = installed
    with pytest.raises(psycopg.errors.InvalidGrantOperation, match="cannot be set for columns"):
        db.sql("owner", f'ALTER DEFAULT PRIVILEGES IN SCHEMA audit GRANT UPDATE (payload) ON '
                        f'TABLES TO "{db.roles["retention"]}"')


@pytest.mark.postgres
async def test_application_role_appends_through_the_library_and_nothing_more(
        installed: Provisioned) -> None:
    import psycopg

    from compliance.audit import AuditEvent, AuditTrail, verify_chain

    db = installed
    config = db.config("app")
    trail = AuditTrail.from_settings(config.audit, data_dir=config.data_dir,
                                     erasure=config.erasure)
    async with trail:
        [record] = await trail.record([AuditEvent("retrieval", "svc-rag", {"query": "q"},
                                                  tenant="bank-a")])
        assert await trail.store.check_writable() == "primary server, INSERT granted"
        assert (await verify_chain(trail.store)).last_seq == record.seq
    for statement in ("DELETE FROM audit.audit_events", "TRUNCATE audit.audit_events",
                      "UPDATE audit.audit_events SET actor = 'x'",
                      "UPDATE audit.audit_events SET payload = NULL",
                      "DROP TRIGGER audit_events_guard ON audit.audit_events",
                      "CREATE TABLE audit.sneaky (id int)", "CREATE SCHEMA sneaky"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.sql("app", statement)


@pytest.mark.postgres
@pytest.mark.integration
async def test_application_role_runs_the_pipeline_and_the_compliance_api(
        installed: Provisioned, embedder: Any) -> None:
    """Every table the pipeline and ComplianceManager write has the grants they need."""
    from advanced_rag import AdvancedRAGPipeline, Document

    db = installed
    config = db.config("app")
    docs = [Document("loans", "Loans above 250,000 euros are approved by the credit committee.",
                     metadata={"title": "Loans"}),
            Document("travel", "Staff travel above 1,000 euros needs a director's approval.",
                     metadata={"title": "Travel"})]
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        report = await rag.ingest(docs, tenant="bank-a", actor="alice")
        assert not report.failed
        await rag.retrieve("Who approves loans?", tenant="bank-a", actor="bob")
        await rag.retrieve("Who approves travel?", tenant="bank-a", actor="carol")
        answer = await rag.answer("Who approves loans?", tenant="bank-a", actor="bob")
        assert answer.text
        cm = rag.compliance
        hold = await cm.place_legal_hold("tenant", tenant="bank-a", reason="inquiry",
                                         actor="dpo")
        await cm.release_legal_hold(hold.id, reason="closed", actor="dpo")
        assert [v.version for v in await rag.get_document_lineage("loans", "bank-a")] == [1]
        await rag.forget_document("travel", "bank-a", actor="dpo", reason="Art. 17")
        erased = await cm.erase_subject("bob", actor="dpo", reason="ticket 77")
        assert erased.key_ids
        assert (await cm.verify_audit_log()).events_checked > 10  # raises when it fails
    [(logged,)] = db.sql("superuser", "SELECT count(*) FROM audit.query_log")
    [(versions,)] = db.sql("superuser", "SELECT count(*) FROM audit.document_versions")
    [(keys,)] = db.sql("superuser", "SELECT count(*) FROM audit.subject_keys")
    assert logged >= 1 and versions >= 3 and keys >= 1


@pytest.mark.postgres
async def test_retention_role_redacts_and_prunes(installed: Provisioned) -> None:
    from compliance.audit import AuditEvent, AuditTrail
    from compliance.manager import ComplianceManager

    db = installed
    app = db.config("app")
    async with AuditTrail.from_settings(app.audit, data_dir=app.data_dir,
                                        erasure=app.erasure) as trail:
        await trail.record([AuditEvent("retrieval", "svc-rag", {"top_k": 3})])
    later = datetime.now(UTC) + timedelta(days=400)  # everything is past 183 and 365 days
    config = db.config("retention", retention={
        "audit_events": {"keep_days": 183, "action": "redact"}})
    async with ComplianceManager(config) as cm:
        result = await cm.enforce_retention_policy(now=later)
        report = await cm.verify_audit_log()  # raises if redaction broke the chain
    assert report.redacted_events > 0
    classes = {c.record_class: c for c in result.plan.classes}
    assert classes["audit_events"].selected > 0
    [(redacted,)] = db.sql("superuser", "SELECT count(*) FROM audit.audit_events "
                           "WHERE payload IS NULL")
    assert redacted >= classes["audit_events"].selected
    assert db.sql("superuser", "SELECT count(*) FROM audit.query_log") == [(0,)]


@pytest.mark.postgres
async def test_retention_role_prunes_behind_a_signed_prune_point(installed: Provisioned,
                                                                 tmp_path: Path) -> None:
    from compliance.audit import CheckpointSigner
    from compliance.manager import ComplianceManager

    db = installed
    key = tmp_path / "signing.pem"
    CheckpointSigner.generate().save(key)
    later = datetime.now(UTC) + timedelta(days=400)
    config = db.config("retention", audit={"signing_key_file": str(key)}, retention={
        "audit_events": {"keep_days": 183, "action": "prune"}})
    async with ComplianceManager(config) as cm:
        result = await cm.enforce_retention_policy(now=later)
        report = await cm.verify_audit_log()  # starts from the signed prune point
    assert result.prune_point is not None and result.prune_point.events_deleted
    assert report.pruned_through == result.prune_point.through_seq
    [(first,)] = db.sql("superuser", "SELECT min(seq) FROM audit.audit_events")
    assert first > result.prune_point.through_seq
    assert db.sql("superuser", "SELECT count(*) FROM audit.audit_prunes") == [(1,)]


@pytest.mark.postgres
async def test_scheduler_runs_as_the_retention_role_in_its_own_schema(
        installed: Provisioned, tmp_path: Path) -> None:
    from compliance.scheduling import run_scheduler

    db = installed
    path = tmp_path / "scheduler.yaml"
    settings = {"data_dir": str(tmp_path / "data"),
                "audit": {"url": db.url("retention"), "schema": "audit", "create": False},
                "scheduler": {"url": db.url("retention")}}
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    config = load_config(path)
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(config, path, stop=stop))
    try:
        deadline = time.monotonic() + 30
        rows: list[tuple[Any, ...]] = []
        while not rows and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if db.sql("superuser", "SELECT to_regclass('scheduler.scheduler_lock')")[0][0]:
                rows = db.sql("superuser", "SELECT holder FROM scheduler.scheduler_lock")
        assert not task.done(), task.exception() if task.done() else None
        assert rows, "the scheduler did not take its lock"
        tables = {r[0] for r in db.sql("superuser", "SELECT table_name FROM "
                                       "information_schema.tables WHERE table_schema = "
                                       "'scheduler'")}
        assert tables == {"scheduler_lock", "apscheduler_jobs"}
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert db.sql("superuser", "SELECT holder FROM scheduler.scheduler_lock") == []
