"""The ``advanced-rag`` command, run as a user runs it: a subprocess with its own config."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from advanced_rag.cli import default_actor
from compliance.audit.guards import GUARD_NAMES

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "advanced_rag.cli"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=env)


def test_help_lists_every_command(tmp_path: Path) -> None:
    out = run("--help", cwd=tmp_path)
    assert out.returncode == 0
    for command in ("init", "ingest", "query", "answer", "score", "eval", "tune", "demo",
                    "audit"):
        assert command in out.stdout
    for command in ("ingest", "query", "tune", "demo"):
        sub = run(command, "--help", cwd=tmp_path)
        assert sub.returncode == 0 and "--config" in sub.stdout
    assert run(cwd=tmp_path).returncode == 2


def test_init_ingest_query_round_trip(tmp_path: Path) -> None:
    assert run("init", cwd=tmp_path).returncode == 0
    assert run("init", cwd=tmp_path).returncode == 2  # refuses to overwrite
    config = tmp_path / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        "${ADVANCED_RAG_MILVUS_URI:-./.advanced-rag/milvus.db}", str(tmp_path / "m.db")),
        encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "complaints.md").write_text(
        "---\ntitle: Complaints\nclassification: public\n---\nComplaints are acknowledged "
        "within 3 business days.\n", encoding="utf-8")
    (docs / "loans.txt").write_text("Loans above 250,000 euros go to the credit committee.",
                                    encoding="utf-8")
    (docs / "broken.txt").write_bytes(b"\xff\xfe broken")
    out = run("ingest", str(docs), "--tenant", "bank-a", "--json", "--quiet", cwd=tmp_path)
    assert out.returncode == 1, out.stderr  # one document failed
    report = json.loads(out.stdout)
    assert report["new"] == 2 and [f["doc_id"] for f in report["failed"]] == ["broken"]

    out = run("query", "how fast is a complaint acknowledged", "--tenant", "bank-a", "--json",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["hits"][0]["doc_id"] == "complaints"
    assert result["hits"][0]["classification"] == "public"
    out = run("query", "loans", "--tenant", "bank-a", "--classification", "public", "--json",
              cwd=tmp_path)
    assert {h["doc_id"] for h in json.loads(out.stdout)["hits"]} == {"complaints"}
    out = run("query", "loans", "--tenant", "bank-b", cwd=tmp_path)
    assert out.returncode == 0 and "0 hits" in out.stdout

    out = run("answer", "Who decides on loans above 250,000 euros?", "--tenant", "bank-a",
              "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert "credit committee" in answer["text"] and answer["citations"][0]["doc_id"] == "loans"
    assert answer["decision"] in ("returned", "flagged")
    context = tmp_path / "context.txt"
    context.write_text("Complaints are acknowledged within 3 business days.", encoding="utf-8")
    out = run("score", "--question", "How fast?", "--answer", "Complaints are acknowledged "
              "within 30 business days.", "--context-file", str(context), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    scored = json.loads(out.stdout)
    assert scored["hallucination_risk"] > 0.5 and scored["claims"][0]["verdict"] != "supported"


def test_audit_verify_tail_export_and_tamper_detection(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "loans.txt").write_text("Loans above 250,000 euros go to the credit committee.",
                                    encoding="utf-8")
    assert run("ingest", str(docs), "--tenant", "bank-a", "--quiet", "--actor", "ops-1",
               cwd=tmp_path).returncode == 0
    assert run("query", "who approves loans", "--tenant", "bank-a", "--actor", "teller-9",
               cwd=tmp_path).returncode == 0

    out = run("audit", "verify", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # per process (2): config_loaded + model_loaded (embedder, judge, retrieval risk);
    # + ingested + retrieval
    retrieval = json.loads(out.stdout)["events_checked"]  # the last event verified
    assert retrieval == 2 * 4 + 2
    out = run("audit", "tail", "-n", "2", "--json", cwd=tmp_path)
    tail = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(e["seq"], e["event_type"], e["actor"]) for e in tail] == [
        (retrieval, "retrieval", "teller-9"), (retrieval + 1, "audit_verified", default_actor())]
    assert tail[0]["payload"]["query"] == "who approves loans"

    export = tmp_path / "audit-export.jsonl"
    out = run("audit", "export", "--output", str(export), "--from", "2000-01-01", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert run("audit", "verify-export", str(export), cwd=tmp_path).returncode == 0
    text = export.read_text(encoding="utf-8")
    assert "who approves loans" not in text  # the export keeps the query encrypted (erasure)
    assert text.count('"query_chars":18') == 1
    export.write_text(text.replace('"query_chars":18', '"query_chars":19'), encoding="utf-8")
    out = run("audit", "verify-export", str(export), cwd=tmp_path)
    assert out.returncode == 1 and f"seq {retrieval}" in out.stderr

    db = tmp_path / ".advanced-rag" / "audit.db"
    with sqlite3.connect(db) as conn:  # an insider with write access to the file
        conn.executescript("".join(f"DROP TRIGGER {name};" for name in GUARD_NAMES["sqlite"]))
        conn.execute("UPDATE audit_events SET actor = 'someone-else' WHERE seq = ?", (retrieval,))
    out = run("audit", "verify", cwd=tmp_path)
    assert out.returncode == 1 and f"AUDIT CHAIN INVALID at seq {retrieval}" in out.stderr
    script = Path(__file__).resolve().parents[2] / "scripts" / "verify_audit_log.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cron = subprocess.run([sys.executable, str(script), "--no-record"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=env)
    assert cron.returncode == 1 and f"seq {retrieval}" in cron.stderr


def test_bad_config_exits_2_and_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline:\n  top_k: many\n", encoding="utf-8")
    out = run("query", "x", "--config", str(bad), cwd=tmp_path)
    assert out.returncode == 2 and f"{bad}:2" in out.stderr and "pipeline.top_k" in out.stderr


def test_eval_and_tune_on_a_small_beir_folder(tmp_path: Path) -> None:
    data = tmp_path / "tiny"
    (data / "qrels").mkdir(parents=True)
    corpus = [("d1", "Complaints", "Complaints are acknowledged within 3 business days."),
              ("d2", "Loans", "Loans above 250,000 euros go to the credit committee."),
              ("d3", "Breaches", "Personal data breaches are notified within 72 hours.")]
    (data / "corpus.jsonl").write_text("\n".join(
        json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in corpus), encoding="utf-8")
    queries = [{"_id": "q1", "text": "when are complaints acknowledged", "metadata": {}},
               {"_id": "q2", "text": "who approves big loans", "metadata": {"d2": [{"s": 1}]}},
               {"_id": "q3", "text": "breach notification", "metadata": {"d3": [{"s": 1}]}}]
    (data / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries),
                                        encoding="utf-8")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n",
                                             encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"milvus:\n  uri: {tmp_path / 'm.db'}\n", encoding="utf-8")
    out = run("eval", "retrieval", "--dataset", str(data), "--config", str(cfg), "--quiet",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| keyword | 1.0000 |" in out.stdout and "| hybrid | 1.0000 |" in out.stdout
    out = run("tune", "--dataset", str(data), "--config", str(cfg), "--alphas", "0.2,0.8",
              "--rrf-ks", "5", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "queries outside the test qrels" in out.stdout and "best:" in out.stdout
    assert "fusion:" in cfg.read_text(encoding="utf-8")


def test_eval_faithfulness_on_own_jsonl(tmp_path: Path) -> None:
    rows = [{"answer": "Complaints are acknowledged within 3 business days.",
             "context": "Complaints are acknowledged within 3 business days.", "label": 0},
            {"answer": "Complaints are acknowledged within 30 business days by the CEO.",
             "context": "Complaints are acknowledged within 3 business days.", "label": 1}]
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = run("eval", "faithfulness", "--dataset", str(data), "--json", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["n"] == 2 and report["judge"] == "feature-judge"
    assert report["auroc"] == 1.0  # the altered answer is the riskier one
    bad = run("eval", "faithfulness", "--dataset", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "no data set" in bad.stderr
