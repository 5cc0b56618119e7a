"""Several processes, one Milvus Lite database: ``milvus-lite server`` on 127.0.0.1.

An embedded Lite database (``milvus.uri`` a ``.db`` path) is a folder one process locks; the
Lite server holds that lock instead and every process connects to it with
``milvus.uri: http://127.0.0.1:N`` (docs/lite_server.md). These tests start real
``milvus-lite server`` processes and check that

- the server gives the same hits and scores as the embedded file (it reports itself as Lite,
  so BM25 scores are un-negated the same way);
- an app process, a scheduler job and CLI commands work together through it, sharing one
  audit database whose chain still verifies;
- two processes opening the same Lite *file* conflict, which is why the server exists.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from advanced_rag import AdvancedRAGPipeline, Classification, Document, SearchType
from advanced_rag.config import MilvusSettings, validate_config
from advanced_rag.errors import VectorStoreError
from advanced_rag.store.milvus import MilvusStore
from compliance.audit.models import AuditEventType as T

pytestmark = pytest.mark.integration

MILVUS_LITE = Path(sys.executable).with_name("milvus-lite")
CLI = [sys.executable, "-m", "advanced_rag.cli"]
LOCKED = ("another process holds the lock", "DataDirLockedError")

DOCS = [
    Document("kyc", "Enhanced due diligence applies to customers with a risk score of 70 or "
             "above. The compliance officer approves every enhanced due diligence file.",
             {"owner": "compliance"}, "handbook"),
    Document("complaints", "Complaints must be acknowledged within 3 business days and "
             "resolved within 15 business days.", {"owner": "service"}, "notice", Classification.PUBLIC),
    Document("credit", "A regional credit manager may approve loans up to 250,000 euros. "
             "Larger loans go to the credit committee.", {"owner": "risk"}, "handbook",
             Classification.CONFIDENTIAL),
    Document("cards", "Lost cards are blocked immediately by phone. A new card arrives within "
             "five business days; the first replacement each year is free.", {}, "notice"),
]
QUESTIONS = ["who approves loans above 250,000 euros", "how fast is a complaint acknowledged",
             "risk score for enhanced due diligence", "replacement card business days"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiteServer:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server by its pid: SIGINT is its clean shutdown (drain, close the database),
    then SIGTERM, then SIGKILL, each after a timeout."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def lite_server(data_dir: Path, *, max_workers: int = 1) -> Iterator[LiteServer]:
    """``milvus-lite server --data-dir DATA_DIR --host 127.0.0.1 --port N`` until the block
    ends; ready once it accepts connections."""
    if not MILVUS_LITE.exists():
        pytest.skip(f"no milvus-lite command next to {sys.executable}")
    port = free_port()
    log = data_dir.with_name(data_dir.name + ".server.log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(MILVUS_LITE), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1",
             "--port", str(port), "--max-workers", str(max_workers)],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"milvus-lite server exited {process.returncode}:\n"
                            f"{log.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"milvus-lite server not listening on {port} after 60 s")
                time.sleep(0.1)
        yield LiteServer(data_dir, port, process, log)
    finally:
        stop(process)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiteServer]:
    with lite_server(tmp_path / "lite-data") as running:
        yield running
        assert running.process.poll() is None, "the server died during the test"


def small_config(data_dir: Path, uri: str, **pipeline: Any) -> dict[str, Any]:
    return {"data_dir": str(data_dir), "milvus": {"uri": uri},
            "chunking": {"max_tokens": 48, "min_tokens": 4}, "pipeline": pipeline}


async def ranked(embedder: Any, config: dict[str, Any], *, ingest: bool
                 ) -> AsyncIterator[tuple[SearchType, str, list[tuple[str, dict[str, Any]]]]]:
    """Every (search type, question) → [(chunk id, scores)], best first."""
    async with AdvancedRAGPipeline(validate_config(config), embedder=embedder) as rag:
        if ingest:
            report = await rag.ingest(DOCS, tenant="bank-a")
            assert report.ok and len(report.new) == len(DOCS)
        for search_type in SearchType:
            for question in QUESTIONS:
                hits, _ = await rag.retrieve(question, tenant="bank-a", top_k=10,
                                             search_type=search_type)
                yield search_type, question, [
                    (h.chunk_id, {k: v for k, v in vars_of(h.scores).items() if v is not None})
                    for h in hits]


def vars_of(scores: Any) -> dict[str, Any]:
    return {name: getattr(scores, name) for name in ("dense", "bm25", "fused", "rerank")}


async def collect(embedder: Any, config: dict[str, Any], *, ingest: bool = True
                  ) -> dict[tuple[SearchType, str], list[tuple[str, dict[str, Any]]]]:
    return {(st, q): hits async for st, q, hits in ranked(embedder, config, ingest=ingest)}


def assert_same(embedded: dict[Any, list[tuple[str, dict[str, Any]]]],
                served: dict[Any, list[tuple[str, dict[str, Any]]]]) -> None:
    assert embedded.keys() == served.keys()
    for key, want in embedded.items():
        got = served[key]
        assert [c for c, _ in got] == [c for c, _ in want], key
        for (_, a), (_, b) in zip(want, got, strict=True):
            assert a.keys() == b.keys(), key
            for name in a:
                assert b[name] == pytest.approx(a[name], abs=1e-5), (key, name)
    keyword = [s["bm25"] for (st, _), hits in served.items() if st is SearchType.KEYWORD
               for _, s in hits]
    assert keyword and all(score > 0 for score in keyword)  # un-negated like embedded Lite


# -- (a) the server gives what the embedded file gives ----------------------------------------


@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
async def test_lite_server_gives_the_embedded_hits_and_scores(embedder: Any, tmp_path: Path,
                                                              server: LiteServer,
                                                              fusion: str) -> None:
    embedded = await collect(embedder, small_config(tmp_path / "a", str(tmp_path / "a" / "m.db"),
                                                    fusion=fusion))
    config = small_config(tmp_path / "b", server.uri, fusion=fusion)
    async with AdvancedRAGPipeline(validate_config(config), embedder=embedder) as rag:
        store = rag.store
        assert isinstance(store, MilvusStore) and store.info is not None
        assert store.info.version.startswith("milvus_lite-")
        assert store.info.is_lite and store.info.supports_bm25
        assert "Milvus Lite server milvus_lite-" in await store.probe()
    served = await collect(embedder, config)
    assert_same(embedded, served)
    assert sum(len(hits) for hits in served.values()) > 3 * len(QUESTIONS)


async def test_lite_server_serves_an_existing_embedded_database(embedder: Any,
                                                                tmp_path: Path) -> None:
    """Pointing the server at the ``.db`` folder an app used embedded keeps its data; while
    it runs, the server holds the folder's lock and embedded opens fail; once it stops, the
    folder opens embedded again."""
    db = tmp_path / "data" / "milvus.db"
    embedded = await collect(embedder, small_config(tmp_path / "data", str(db)))
    with lite_server(db) as running:
        served = await collect(embedder, small_config(tmp_path / "data", running.uri),
                               ingest=False)
        assert_same(embedded, served)
        store = MilvusStore(MilvusSettings(uri=str(db)), dimension=384)
        with pytest.raises(VectorStoreError) as caught:
            await store.open()
        assert str(db) in str(caught.value)
    # stopped, the server leaves the folder as it found it: it opens embedded again
    again = await collect(embedder, small_config(tmp_path / "data", str(db)), ingest=False)
    assert_same(embedded, again)


# -- two processes, one Lite file: why the server exists ---------------------------------------

HOLDER = textwrap.dedent("""
    import asyncio, sys
    from advanced_rag.config import MilvusSettings
    from advanced_rag.store.milvus import MilvusStore

    async def main() -> None:
        store = MilvusStore(MilvusSettings(uri=sys.argv[1]), dimension=8)
        await store.open()
        print("open", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the test closes our stdin
        await store.close()
        print("closed", flush=True)

    asyncio.run(main())
""")


@contextmanager
def holding(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process with the embedded Lite database ``db`` open."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stderr is not None
        if holder.stdout.readline().strip() != "open":  # pytest.fail: not the xfail below
            holder.kill()
            pytest.fail(f"the holder did not open {db}:\n{holder.stderr.read()}")
        yield holder
    finally:
        if holder.poll() is None:
            assert holder.stdin is not None
            holder.stdin.close()
            try:
                holder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()


async def test_two_processes_on_one_lite_file_conflict(tmp_path: Path) -> None:
    db = tmp_path / "shared" / "milvus.db"
    with holding(db) as holder:
        store = MilvusStore(MilvusSettings(uri=str(db)), dimension=8)
        with pytest.raises(VectorStoreError) as caught:
            await store.open()
        assert str(db) in str(caught.value) and "locked by another process" in str(caught.value)
        assert holder.poll() is None  # the holder is unharmed
    assert holder.returncode == 0
    store = MilvusStore(MilvusSettings(uri=str(db)), dimension=8)  # free again once it exits
    await store.open()
    try:
        assert await store.count() == 0
    finally:
        await store.close()


async def test_a_locked_lite_file_is_named_as_such(tmp_path: Path) -> None:
    db = tmp_path / "shared" / "milvus.db"
    with holding(db):
        store = MilvusStore(MilvusSettings(uri=str(db)), dimension=8)
        with pytest.raises(VectorStoreError) as caught:
            await store.open()
    text = str(caught.value).lower()
    assert "another process" in text and "milvus-lite server" in text
    assert not caught.value.retriable


# -- (b) app + scheduler + CLI processes through one server ------------------------------------

APP = textwrap.dedent("""
    import asyncio, json, sys, time
    from pathlib import Path
    from advanced_rag import AdvancedRAGPipeline, Document, load_config

    DOCS = [
        Document("app-credit", "A regional credit manager may approve loans up to 250,000 "
                 "euros. Larger loans go to the credit committee.", {}, "app", "internal"),
        Document("app-retention-secret", "Restricted: the vault combination changes every "
                 "Monday.", {}, "app", "restricted"),
    ]

    def heartbeat(n: int) -> Document:
        return Document("app-heartbeat", f"Heartbeat number {n} of the teller application.",
                        {}, "app", "internal")

    async def main(config_path: str, marker: str, stop: str) -> None:
        config = load_config(config_path)
        async with AdvancedRAGPipeline.from_config(config) as rag:
            report = await rag.ingest([*DOCS, heartbeat(0)], tenant="bank-a", actor="app")
            assert report.ok and len(report.new) == 3, report
            own, _ = await rag.retrieve("who approves large loans", tenant="bank-a",
                                        actor="app")
            Path(marker).write_text("ingested")
            # until told to stop: look for the CLI's documents and re-ingest a changing one
            # (a new version: upsert, then delete of the old through the server)
            seen, loops = [], 0
            while not Path(stop).exists():
                loops += 1
                hits, _ = await rag.retrieve("how fast is a complaint acknowledged",
                                             tenant="bank-a", actor="app")
                seen = [h.doc_id for h in hits]
                update = await rag.ingest([heartbeat(loops)], tenant="bank-a", actor="app")
                assert update.updated == ("app-heartbeat",), update
                await asyncio.sleep(0.2)
            print(json.dumps({"own": [h.doc_id for h in own], "cli": seen, "loops": loops}))

    asyncio.run(main(*sys.argv[1:]))
""")


_children: list[subprocess.Popen[str]] = []


@pytest.fixture
def children() -> Iterator[None]:
    """Kill, by pid, whatever :func:`spawn` started that a failed test left running."""
    yield
    while _children:
        child = _children.pop()
        if child.poll() is None:
            child.kill()
            child.communicate()


def spawn(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    child = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    _children.append(child)
    return child


def finish(name: str, process: subprocess.Popen[str], *, timeout: float = 600
           ) -> tuple[str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"{name} timed out:\n{err[-3000:]}")
    assert process.returncode == 0, f"{name} exited {process.returncode}:\n{err[-3000:]}"
    assert not any(s in out + err for s in LOCKED), f"{name} hit a Lite lock:\n{err[-3000:]}"
    return out, err


@pytest.mark.slow
def test_app_scheduler_and_cli_share_one_lite_server(tmp_path: Path, server: LiteServer,
                                                     children: None) -> None:
    data = tmp_path / "data"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        **small_config(data, server.uri),
        # a documents rule makes the retention job open the pipeline and list documents by
        # age through Milvus (query iterator); nothing is old enough to go
        "retention": {"documents": {"restricted": {"keep_days": 1, "action": "delete"}}},
    }), encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cli-complaints.md").write_text(
        "---\nclassification: public\n---\nComplaints are acknowledged within 3 business days "
        "and resolved within 15.\n", encoding="utf-8")
    (docs / "cli-cards.txt").write_text("Lost cards are blocked immediately by phone.",
                                        encoding="utf-8")
    (tmp_path / "app.py").write_text(APP, encoding="utf-8")
    cfg = ["--config", str(config)]
    # as at install: the schema owner creates the tables once (README "Database migrations")
    finish("db upgrade", spawn([*CLI, "db", "upgrade", *cfg], tmp_path))

    started = time.monotonic()
    marker, stop_app = tmp_path / "app-ingested", tmp_path / "app-stop"
    app_process = spawn([sys.executable, str(tmp_path / "app.py"), str(config), str(marker),
                         str(stop_app)], tmp_path)
    running = {
        "cli ingest": spawn([*CLI, "ingest", str(docs), "--tenant", "bank-a", "--json",
                             "--quiet", "--actor", "ops-cli", *cfg], tmp_path),
        "scheduler run-now retention": spawn(
            [*CLI, "scheduler", "run-now", "retention", "--json", *cfg], tmp_path),
    }
    deadline = time.monotonic() + 600
    while not marker.exists():
        if app_process.poll() is not None:
            finish("app", app_process)
            pytest.fail("the app exited before ingesting")
        assert time.monotonic() < deadline, "the app never finished its ingest"
        time.sleep(0.2)
    # while the app keeps retrieving: the CLI finds what the app ingested
    running["cli query"] = spawn([*CLI, "query", "who approves loans above 250,000 euros",
                                  "--tenant", "bank-a", "--json", "--actor", "teller-cli",
                                  *cfg], tmp_path)
    outputs = {name: finish(name, process)[0] for name, process in running.items()}
    if app_process.poll() is not None:
        finish("app", app_process)
        pytest.fail("the app stopped before the others finished")
    stop_app.touch()
    outputs["app"] = finish("app", app_process)[0]
    elapsed = time.monotonic() - started

    app = json.loads(outputs["app"].strip().splitlines()[-1])
    assert app["own"][0] == "app-credit"
    assert app["cli"][0] == "cli-complaints"  # the app sees what the CLI ingested
    assert app["loops"] >= 2  # it kept reading and writing while the others ran
    ingest = json.loads(outputs["cli ingest"])
    assert ingest["new"] == 2 and not ingest["failed"]
    query = json.loads(outputs["cli query"])
    assert query["hits"][0]["doc_id"] == "app-credit"  # the CLI sees what the app ingested
    retention = json.loads(outputs["scheduler run-now retention"])
    assert retention["status"] == "applied"
    assert retention["classes"]["documents:restricted"]["error"] is None

    # afterwards, a fresh CLI process sees every document, and only the app's last heartbeat
    out, _ = finish("cli query (after)", spawn(
        [*CLI, "query", "heartbeat cards complaints loans", "--tenant", "bank-a", "--top-k",
         "50", "--search-type", "dense", "--json", *cfg], tmp_path))
    hits = json.loads(out)["hits"]
    assert {h["doc_id"] for h in hits} == {"app-credit", "app-retention-secret", "app-heartbeat",
                                           "cli-complaints", "cli-cards"}
    assert {(h["doc_version"], h["text"]) for h in hits if h["doc_id"] == "app-heartbeat"} == {
        (app["loops"] + 1, f"Heartbeat number {app['loops']} of the teller application.")}

    # the audit chain written by four processes at once still verifies
    out, _ = finish("audit verify", spawn([*CLI, "audit", "verify", "--json", *cfg], tmp_path))
    verified = json.loads(out)
    assert verified["ok"] and verified["events_checked"] > 10
    out, _ = finish("audit tail", spawn([*CLI, "audit", "tail", "-n", "100000", "--json", *cfg],
                                        tmp_path))
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    by_actor: dict[str, set[str]] = {}
    for event in events:
        by_actor.setdefault(event["actor"], set()).add(event["event_type"])
    ingested, retrieval = T.DOCUMENT_INGESTED.value, T.RETRIEVAL.value
    assert {ingested, retrieval} <= by_actor["app"]
    assert ingested in by_actor["ops-cli"] and retrieval in by_actor["teller-cli"]
    assert {T.JOB_STARTED.value, T.JOB_FINISHED.value} <= {
        e["event_type"] for e in events if (e["payload"] or {}).get("job_id") == "retention"}

    # nothing opened an embedded Lite database: the server's folder is the only one
    assert not [p for p in tmp_path.rglob("*.db") if p.is_dir()]
    assert (server.data_dir / "LOCK").exists()
    print(f"processes: {elapsed:.1f} s; {len(events)} audit events; app loops {app['loops']}")


async def test_a_collection_created_by_another_process_meanwhile_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race CI hit with four processes starting on one server: each asks
    has_collection (False), one creates it, the next create fails 'already exists'. The
    interleaving is reproduced deterministically by answering False to the second store."""
    from pymilvus import MilvusClient

    settings = MilvusSettings(uri=str(tmp_path / "race.db"))
    first = MilvusStore(settings, dimension=8)
    await first.open()
    await first.close()
    monkeypatch.setattr(MilvusClient, "has_collection", lambda self, name, **kw: False)
    second = MilvusStore(settings, dimension=8)
    await second.open()  # create raises "already exists": the store uses the existing one
    try:
        assert await second.count() == 0
    finally:
        await second.close()
    wrong = MilvusStore(settings, dimension=16)  # ... and still checks it matches
    with pytest.raises(Exception, match="8-d vectors"):
        await wrong.open()
