"""PayloadCipher: encrypts personal-data fields as events are recorded, decrypts them for readers.

Writing (:meth:`PayloadCipher.seal`, called by ``AuditTrail.record``): every top-level payload
field named in ``erasure.fields`` whose value is a string is replaced by an envelope (see
crypto.py) under the live key of the event's subject, its ``actor``. The event is rebuilt with
the new payload (same id, time and parents), so the chain hashes what is stored: destroying
the key later leaves every hash, and therefore verification, unchanged.

Reading (:meth:`PayloadCipher.readable`): records whose stored payload holds envelopes come
back as copies whose ``payload`` decrypts lazily (on first access) with keys loaded fresh from
the database; ``payload_json`` stays the stored, hashed text. A field whose key was destroyed
reads ``"[erased]"``. Records without envelopes are returned as they are.

Example::

    cipher = PayloadCipher(keys, fields=("query", "answer"))
    [sealed] = await cipher.seal([AuditEvent("retrieval", "alice", {"query": "my IBAN …"})])
    sealed.payload["query"]["enc"]        # 'aes-256-gcm'
    [shown] = await cipher.readable([await store.append(sealed)])
    shown.payload["query"]                # 'my IBAN …' (or '[erased]')
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..audit.hashing import canonical_json, digest_text
from ..audit.models import AuditEvent, AuditRecord
from .crypto import (
    ENVELOPE_MARKER,
    ERASED,
    KEY_UNAVAILABLE,
    UNDECRYPTABLE,
    EnvelopeError,
    field_aad,
    is_envelope,
    open_envelope,
    seal,
)
from .keys import SubjectKeys, subject_ref

__all__ = ["DecryptedPayload", "PayloadCipher", "decrypt_payload", "splice"]


def decrypt_payload(payload: Mapping[str, Any], event_id: str,
                    keys: Mapping[str, AESGCM | None]) -> dict[str, Any]:
    """``payload`` with each top-level envelope replaced by its plaintext, or by
    :data:`ERASED` (key destroyed), :data:`KEY_UNAVAILABLE` (no such key here) or
    :data:`UNDECRYPTABLE` (does not authenticate)."""
    out = dict(payload)
    for name, value in payload.items():
        if not is_envelope(value):
            continue
        kid = value["kid"]
        if kid not in keys:
            out[name] = KEY_UNAVAILABLE
            continue
        aead = keys[kid]
        if aead is None:
            out[name] = ERASED
            continue
        try:
            out[name] = open_envelope(aead, value, aad=field_aad(event_id, name, str(kid)))
        except EnvelopeError:
            out[name] = UNDECRYPTABLE
    return out


class DecryptedPayload(Mapping[str, Any]):
    """A read-only payload mapping that parses and decrypts its stored JSON on first access."""

    __slots__ = ("_data", "_event_id", "_json", "_keys")

    def __init__(self, stored_json: str, event_id: str,
                 keys: Mapping[str, AESGCM | None]) -> None:
        self._json, self._event_id, self._keys = stored_json, event_id, keys
        self._data: Mapping[str, Any] | None = None

    def _plain(self) -> Mapping[str, Any]:
        if self._data is None:
            self._data = MappingProxyType(decrypt_payload(json.loads(self._json), self._event_id,
                                                          self._keys))
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._plain()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._plain())

    def __len__(self) -> int:
        return len(self._plain())

    def __repr__(self) -> str:
        return f"DecryptedPayload({dict(self._plain())!r})"


class PayloadCipher:
    """Seals personal-data fields on write and opens them on read (see the module docstring).

    ``encrypt=False`` (``erasure.encrypt_personal_data: false``) writes plaintext but still
    decrypts what was encrypted earlier.
    """

    def __init__(self, keys: SubjectKeys, *, fields: Sequence[str], encrypt: bool = True) -> None:
        self.keys = keys
        self.fields = tuple(dict.fromkeys(fields))
        self.encrypt = encrypt and bool(self.fields)

    async def open(self) -> PayloadCipher:
        await self.keys.open()
        return self

    async def close(self) -> None:
        await self.keys.close()

    def _personal(self, payload: Mapping[str, Any]) -> list[str]:
        return [f for f in self.fields if isinstance(payload.get(f), str)]

    async def seal(self, events: Sequence[AuditEvent]) -> Sequence[AuditEvent]:
        """``events`` with personal-data fields encrypted (events without any are reused)."""
        if not self.encrypt:
            return events
        out: list[AuditEvent] | None = None
        for i, event in enumerate(events):
            names = self._personal(event.payload)
            if not names:
                if out is not None:
                    out.append(event)
                continue
            if out is None:
                out = list(events[:i])
            key = self.keys.cached(event.actor) or await self.keys.active(event.actor)
            boxes = {name: seal(key.aead, event.payload[name], kid=key.kid,
                                subject=key.subject_ref,
                                aad=field_aad(event.event_id, name, key.kid)) for name in names}
            out.append(_with_payload(event, {**event.payload, **boxes}, boxes))
        return events if out is None else out

    async def readable(self, records: Sequence[AuditRecord], *,
                       copy: bool = True) -> list[AuditRecord]:
        """``records`` as a person should see them: envelopes decrypted (lazily) or marked.

        ``copy=False`` sets the decrypting payload on the given records themselves instead of
        on copies: for callers that own records fresh from the store (100,000 copies cost
        about a second, most of it garbage collection)."""
        sealed = [r for r in records if r.payload_json and ENVELOPE_MARKER in r.payload_json]
        if not sealed:
            return list(records)
        keys = await self.keys.readers(subject_ref(a) for a in {r.actor for r in sealed})
        shown: dict[int, AuditRecord] = {}
        for record in sealed:
            target = record
            if copy:  # the same fields, no __init__ (a tenth of the cost)
                target = object.__new__(type(record))
                target.__dict__.update(record.__dict__)
                shown[id(record)] = target
            # AuditRecord.payload is a cached_property: a value in the instance dict wins
            target.__dict__["payload"] = DecryptedPayload(record.payload_json or "",
                                                          record.event_id, keys)
        return [shown.get(id(r), r) for r in records] if shown else list(records)


def splice(canonical: str, payload: Mapping[str, Any], replaced: Mapping[str, Any]) -> str | None:
    """The canonical JSON of ``payload`` with the top-level values in ``replaced`` swapped in,
    built from ``canonical`` (the payload's canonical JSON) without encoding it again; ``None``
    when that cannot be done safely (then the caller encodes the whole payload).

    Safe because inside a JSON string every ``"`` is escaped, so ``,"name":`` or ``{"name":``
    only ever starts a key; a key text found exactly once is the top-level key, and the value
    after it is checked to be exactly the old value's encoding. Keys keep their sorted order,
    so the result is byte for byte what :func:`canonical_json` gives (a test compares them).
    """
    text = canonical
    for name, new in replaced.items():
        key = canonical_json(name) + ":"
        if text.count(key) != 1:
            return None
        at = text.index(key)
        if at == 0 or text[at - 1] not in ",{":
            return None
        start = at + len(key)
        old = canonical_json(payload[name])
        if not text.startswith(old, start):
            return None
        text = text[:start] + canonical_json(new) + text[start + len(old):]
    return text


_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(AuditEvent))


def _with_payload(event: AuditEvent, payload: dict[str, Any],
                  replaced: Mapping[str, Any] | None = None) -> AuditEvent:
    """``event`` with another payload. Its other fields were validated when it was built, so
    only the payload's canonical text and digest are made again; when only ``replaced`` values
    changed, the text is spliced rather than re-encoded (a fifth of the cost for a retrieval)."""
    copy = object.__new__(AuditEvent)
    for name in _EVENT_FIELDS:
        object.__setattr__(copy, name, getattr(event, name))
    canonical = None
    if replaced:
        canonical = splice(event.canonical_payload, event.payload, replaced)
    if canonical is None:
        canonical = canonical_json(payload)
    object.__setattr__(copy, "payload", MappingProxyType(payload))
    object.__setattr__(copy, "canonical_payload", canonical)
    object.__setattr__(copy, "payload_digest", digest_text(canonical))
    return copy
