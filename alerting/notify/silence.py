"""Stage 4, silence: the SilenceStore, held in memory and kept in the store so silences survive a restart.

Each change writes a new row (`vigil_silences`, newest `UpdatedAt` wins), so an expire is an
insert, never an update; the memory copy answers every read. A write the store refuses raises, and
the memory copy is left as it was, so what the API confirmed is what a restart finds.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from alerting.matchers import Matcher, MatcherError
from alerting.model import Silence
from vigil.store import Store
from vigil.store.schema import SILENCES

RETENTION_S = 5 * 86400.0  # expired silences stay listable this long, as Alertmanager's default 120 h
MAX_SILENCES = 10_000
MAX_MATCHERS = 64
MAX_TEXT = 4096
_COLUMNS = ("Id", "Matchers", "StartsAt", "EndsAt", "CreatedBy", "Comment", "UpdatedAt")


class SilenceError(ValueError):
    """A silence that cannot be created as asked; the message says what to change."""


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class SilenceStore:
    def __init__(self, store: Store | None) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._silences: dict[str, Silence] = {}
        self._matchers: dict[str, tuple[Matcher, ...]] = {}

    def load(self, now: float) -> int:
        """Read the silences not past retention from the store; returns how many."""
        if self._store is None:
            return 0
        rows = self._store.query_rows(
            f"SELECT Id, argMax(Matchers, UpdatedAt), toFloat64(argMax(StartsAt, UpdatedAt)),"
            f" toFloat64(argMax(EndsAt, UpdatedAt)), argMax(CreatedBy, UpdatedAt), argMax(Comment, UpdatedAt)"
            f" FROM {SILENCES} GROUP BY Id HAVING toFloat64(argMax(EndsAt, UpdatedAt)) > {{since:Float64}}",
            {"since": now - RETENTION_S},
        )
        with self._lock:
            for sid, matchers, starts, ends, by, comment in rows:
                triples = tuple(tuple(m) for m in json.loads(matchers))
                silence = Silence(sid, triples, float(starts), float(ends), by, comment)  # type: ignore[arg-type]
                self._silences[sid] = silence
                self._matchers[sid] = tuple(Matcher.of(*m) for m in triples)
        return len(rows)

    def _write(self, silence: Silence, now: float) -> None:
        if self._store is None:
            return
        row = (
            silence.id,
            json.dumps([list(m) for m in silence.matchers]),
            _ts(silence.starts_at),
            _ts(silence.ends_at),
            silence.created_by,
            silence.comment,
            _ts(now),
        )
        self._store.insert_columns(SILENCES, [[v] for v in row], _COLUMNS)

    def create(
        self,
        matchers: Sequence[tuple[str, str, str] | Matcher],
        starts_at: float,
        ends_at: float,
        created_by: str,
        comment: str,
        now: float | None = None,
    ) -> Silence:
        try:
            compiled = tuple(m if isinstance(m, Matcher) else Matcher.of(*m) for m in matchers)
        except MatcherError as exc:
            raise SilenceError(str(exc)) from None
        if not compiled:
            raise SilenceError("a silence needs at least one matcher")
        if len(compiled) > MAX_MATCHERS:
            raise SilenceError(f"a silence has at most {MAX_MATCHERS} matchers")
        if all(m.matches({}) for m in compiled):
            raise SilenceError("at least one matcher must not match the empty string, or the silence mutes everything")
        if ends_at <= starts_at:
            raise SilenceError("endsAt must be after startsAt")
        if not created_by.strip():
            raise SilenceError("createdBy is required: say who silences")
        if len(comment) > MAX_TEXT or len(created_by) > MAX_TEXT:
            raise SilenceError(f"createdBy and comment are at most {MAX_TEXT} characters")
        now = starts_at if now is None else now
        silence = Silence(
            uuid.uuid4().hex, tuple(m.as_tuple() for m in compiled), starts_at, ends_at, created_by, comment
        )
        with self._lock:
            self._prune(now)
            if len(self._silences) >= MAX_SILENCES:
                raise SilenceError(f"{MAX_SILENCES} silences are held already; expire some first")
            self._write(silence, now)
            self._silences[silence.id] = silence
            self._matchers[silence.id] = compiled
        return silence

    def list(self, now: float, include_expired: bool = False) -> list[Silence]:
        with self._lock:
            found = [s for s in self._silences.values() if include_expired or now < s.ends_at]
        return sorted(found, key=lambda s: (s.starts_at, s.id))

    def get(self, silence_id: str) -> Silence | None:
        return self._silences.get(silence_id)

    def expire(self, silence_id: str, now: float) -> bool:
        """End a silence now (a pending one ends before it starts); False when unknown or already over."""
        with self._lock:
            silence = self._silences.get(silence_id)
            if silence is None or silence.ends_at <= now:
                return False
            starts = min(silence.starts_at, now)
            ended = Silence(silence.id, silence.matchers, starts, now, silence.created_by, silence.comment)
            self._write(ended, now)
            self._silences[silence_id] = ended
        return True

    def matching(self, labels: Mapping[str, str], now: float) -> list[Silence]:
        with self._lock:
            return [
                s
                for sid, s in self._silences.items()
                if s.active(now) and all(m.matches(labels) for m in self._matchers[sid])
            ]

    def _prune(self, now: float) -> None:
        for sid in [sid for sid, s in self._silences.items() if s.ends_at < now - RETENTION_S]:
            del self._silences[sid]
            del self._matchers[sid]
