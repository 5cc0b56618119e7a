"""Legal holds on a real SQLite audit database: scopes, coverage, release, validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from advanced_rag.config import validate_config
from advanced_rag.errors import InputError
from compliance.retention.holds import LegalHolds, covered, subject_ref

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_scopes_cover_what_they_name_and_release_ends_them(tmp_path: Path) -> None:
    holds = await LegalHolds.open(validate_config({"data_dir": str(tmp_path)}))
    try:
        tenant = await holds.place("tenant", tenant="bank-a", reason="SEC inquiry", actor="legal")
        doc = await holds.place("document", tenant="bank-b", doc_id="kyc-1", reason="litigation",
                                actor="legal")
        person = await holds.place("subject", subject="alice@example.com", reason="DSAR dispute",
                                   actor="legal")
        window = await holds.place("time_range", start=T0, end=T0 + timedelta(days=31),
                                   reason="audit of January", actor="legal")
        active = await holds.active()
        assert {h.id for h in active} == {tenant.id, doc.id, person.id, window.id}
        assert covered(active, tenant="bank-a") == tenant
        assert covered(active, tenant="bank-b", doc_id="kyc-1") == doc
        assert covered(active, tenant="bank-c", doc_id="kyc-1") is None
        assert covered(active, subject="alice@example.com") == person
        assert person.subject_ref == subject_ref("alice@example.com")  # never the identifier
        assert covered(active, tenant="bank-c", at=T0 + timedelta(days=3)) == window
        assert covered(active, tenant="bank-c", at=T0 + timedelta(days=40)) is None
        released = await holds.release(tenant.id, actor="legal", reason="closed")
        assert released.id == tenant.id
        assert covered(await holds.active(), tenant="bank-a") is None
        with pytest.raises(InputError, match="no active legal hold"):
            await holds.release(tenant.id, actor="legal", reason="again")
        with pytest.raises(InputError, match="needs doc_id"):
            await holds.place("document", tenant="bank-a", reason="x", actor="legal")
        with pytest.raises(InputError, match="reason"):
            await holds.place("tenant", tenant="bank-a", reason=" ", actor="legal")
        with pytest.raises(InputError, match="timezone"):
            await holds.place("time_range", start=datetime(2026, 1, 1), reason="x", actor="l")
    finally:
        await holds.close()
