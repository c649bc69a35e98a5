"""A faster read of the log for rebuilds: pages of stored rows decoded into the same event objects.

The library's path (`recorder.select_notifications` then `mapper.to_domain_event`) builds a
`Notification` dataclass and a `UUID` per row and decodes JSON with a general object hook. A
rebuild replays millions of events, so it reads the stored rows itself (SQLite: one SELECT per
page; PostgreSQL: the recorder's own select) and decodes them the way the mapper does:

- the stored state goes through the mapper's own cipher and compressor when configured;
- the JSON is decoded by msgspec (C), then the transcoder's registered transcodings are applied
  bottom-up, as the library's object hook does (the same `_type_`/`_data_` objects, decoded by
  the same transcodings);
- topic -> class, `originator_id` / `originator_version`, `class_version` upcasts, and
  `object.__new__(cls)` with the state as `__dict__`, as `Mapper.to_domain_event` does.

With `text_times` (a rebuild of projections that declare `Projection.text_times`), a time is
left as the text it was stored as where that text is what the projections would write for it:
an act's local time to the second (`vn_iso`'s form, "2025-09-03T17:00:00+07:00") and the record
time in UTC to the microsecond (`utc_iso`'s, for `timestamp` only); any other form is parsed
into a datetime. Those projections take either (`act_text`, `stamp_text`, `as_datetime`):
every time of a rebuild's millions of events was parsed, only to be written back as the same
text.

Events of the page last read whose state held nothing but JSON strings, integers, booleans,
nulls, floats that `json.dumps` and msgspec write alike, and times at its top level are kept in
`PLAIN` (id -> event): the public feed writes their records without looking for anything
else (`projections.feed.canonical_bytes`).

`originator_id` is an `IdUUID`: a `uuid.UUID` (equal, same hash) whose `str()` is computed once,
since projections turn ids into text several times per event. A transcoder that is not the
library's JSON transcoder makes `FastReader.usable()` false and the caller keeps the library path.
`tests/integration/test_projections_fastread.py` checks the events are equal to the mapper's.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, SafeUUID

import msgspec
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder
from eventsourcing.utils import resolve_topic

from domain.calendar import utc_iso, vn_iso

_set = object.__setattr__
# Events of the page last read whose state was plain JSON and top-level times (see above).
PLAIN: dict[int, Any] = {}
# `read_aggregates`: what `wanted(topic)` returns for an event to build without its state.
BARE = 2
_new_uuid = UUID.__new__
_UNKNOWN = SafeUUID.unknown


class IdUUID(UUID):
    """A UUID that remembers its text form."""

    __slots__ = ("_text",)

    def __str__(self) -> str:
        try:
            return self._text
        except AttributeError:
            text = UUID.__str__(self)
            _set(self, "_text", text)
            return text


def id_uuid(value: str | UUID) -> UUID:
    if isinstance(value, UUID):
        return value
    u = _new_uuid(IdUUID)
    _set(u, "int", int(value.replace("-", ""), 16))
    _set(u, "is_safe", _UNKNOWN)
    if (len(value) == 36 and value[8] == value[13] == value[18] == value[23] == "-"
            and value == value.lower()):  # already str(uuid)'s form (SQLite's text)
        _set(u, "_text", value)
    return u


def forget_page() -> None:
    """Let go of what was kept about the last page read (its plain events): done before each
    page, and once a rebuild is over."""
    PLAIN.clear()


def is_act_text(text: str) -> bool:
    """Whether a stored time's text is the one `vn_iso` writes for it (from 1976 on, when Viet
    Nam's offset has been fixed)."""
    return len(text) == 25 and text[19:] == "+07:00" and text[10] == "T" and text >= "1976"


def is_stamp_text(text: str) -> bool:
    """Whether a stored time's text is the one `utc_iso` writes for it."""
    return len(text) == 32 and text[26:] == "+00:00" and text[10] == "T"


def act_text(at: datetime | str) -> str:
    """An act's time as `vn_iso` writes it, read as a datetime or (`text_times`) as that text."""
    return at if isinstance(at, str) else vn_iso(at)


def stamp_text(at: datetime | str) -> str:
    """A record time as `utc_iso` writes it, read as a datetime or as that text."""
    return at if isinstance(at, str) else utc_iso(at)


def as_datetime(at: datetime | str) -> datetime:
    return datetime.fromisoformat(at) if isinstance(at, str) else at


class FastReader:
    """Reads (position, event) pages from the application's event store."""

    def __init__(self, app: Any, text_times: bool = False) -> None:
        self.app = app
        self.mapper = app.mapper
        self.recorder = app.recorder
        self._classes: dict[str, tuple[type, int]] = {}
        self._walk: Callable[[Any], Any] = lambda value: value
        transcoder = self.mapper.transcoder
        self._decode_json: Callable[[bytes], Any] | None = None
        self._odd = [True]
        if type(transcoder) is JSONTranscoder:
            names = dict(transcoder.names)
            decoders = {name: t.decode for name, t in names.items()}
            parse = datetime.fromisoformat
            # The transcoding decode_json decodes without `hook` (None: the library's own).
            inline = None

            def act_time(text: str) -> Any:
                return text if is_act_text(text) else parse(text)

            def stamp_time(text: str) -> Any:
                return text if is_stamp_text(text) else parse(text)

            act, stamp = (act_time, stamp_time) if text_times else (parse, parse)
            if "datetime_iso" in decoders and type(names["datetime_iso"]) is DatetimeAsISO:
                inline = "datetime_iso"
                decoders["datetime_iso"] = act  # nested times are acts' (attributions)

            def hook(d: dict[str, Any]) -> Any:
                # The library's rule: a two-key object with _type_ and _data_ is a transcoding.
                if len(d) == 2 and "_type_" in d and "_data_" in d:
                    try:
                        return decoders[d["_type_"]](d["_data_"])
                    except KeyError:
                        return transcoder._decode_obj(d)  # raises the library's error
                return d

            def walk(value: Any) -> Any:
                # The hook applied bottom-up to msgspec's plain decoding, as json's object_hook.
                if type(value) is dict:
                    for k, v in value.items():
                        t = type(v)
                        if t is dict or t is list:
                            value[k] = walk(v)
                    return hook(value)
                for i, v in enumerate(value):
                    t = type(v)
                    if t is dict or t is list:
                        value[i] = walk(v)
                return value

            # Set when the state last decoded held anything but plain JSON values and
            # top-level times: a float json.dumps writes otherwise than msgspec (with an
            # exponent, or not finite), a transcoding that is not a top-level time.
            odd = [False]

            def float_hook(text: str) -> float:
                value = float(text)
                if not (1e-4 <= abs(value) < 1e16 or value == 0):
                    odd[0] = True
                return value

            plain = msgspec.json.Decoder(float_hook=float_hook).decode
            slow = json.JSONDecoder(object_hook=hook).decode

            def decode_json(data: bytes) -> Any:
                # msgspec's C decoder is faster than json's with a Python hook on every object;
                # what it refuses and json accepts (NaN) goes to json.
                odd[0] = False
                try:
                    found = plain(data)
                except msgspec.DecodeError:
                    odd[0] = True
                    return slow(bytes(data).decode("utf8"))
                if type(found) is not dict:
                    odd[0] = True
                    return walk(found) if type(found) is list else found
                # An event's state is an object whose transcodings (times, mostly) sit at its
                # top level: those are decoded here, and the nested objects and lists are
                # walked only when the text holds more "_type_" keys than that (a count in C
                # that may only overcount: a string can hold the text, never hide a key).
                left = data.count(b'"_type_"') if type(data) is bytes else -1
                if left == 0:
                    return hook(found)
                nested = []
                for k, v in found.items():
                    t = type(v)
                    if t is dict:
                        text = v.get("_data_")
                        if len(v) != 2 or type(text) is not str or "_type_" not in v:
                            nested.append(k)
                            continue
                        left -= 1
                        # Most transcodings are times: decoded without the hook's checks.
                        if v["_type_"] == inline:
                            found[k] = stamp(text) if k == "timestamp" else act(text)
                        else:
                            odd[0] = True
                            found[k] = hook(v)
                    elif t is list:
                        nested.append(k)
                if left != 0:
                    odd[0] = True
                    for k in nested:
                        found[k] = walk(found[k])
                return hook(found)

            self._decode_json = decode_json
            self._odd = odd
            self._walk = walk
        self._sqlite_table: str | None = None
        self._own: sqlite3.Connection | None = None
        if type(self.recorder).__module__ == "eventsourcing.sqlite" and \
                getattr(self.recorder.datastore, "originator_id_type", "uuid") == "uuid":
            self._sqlite_table = self.recorder.events_table_name

    def sqlite_file(self) -> str | None:
        """The SQLite event store's file (None: not SQLite, or in memory)."""
        if self._sqlite_table is None:
            return None
        pool = self.recorder.datastore.pool
        return None if pool.is_sqlite_memory_mode else str(pool.db_name)

    def detach(self) -> None:
        """Read through a connection of this reader's own (in a forked process: the inherited
        ones belong to the parent)."""
        path = self.sqlite_file()
        assert path is not None
        self._own = sqlite3.connect(path, timeout=30)

    def usable(self) -> bool:
        return self._decode_json is not None

    def _class(self, topic: str) -> tuple[type, int]:
        """The event class of a stored topic and its class version."""
        found = self._classes.get(topic)
        if found is None:
            cls = resolve_topic(topic)
            found = self._classes[topic] = (cls, getattr(cls, "class_version", 1))
        return found

    def _json(self, state: bytes) -> bytes:
        """A stored state as JSON: through the mapper's cipher and compressor, if any."""
        mapper = self.mapper
        if mapper.cipher:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor:
            state = mapper.compressor.decompress(state)
        return state

    def decode(self, originator_id: Any, version: int, topic: str, state: bytes) -> Any:
        cls, class_version = self._class(topic)
        assert self._decode_json is not None
        event_state = self._decode_json(self._json(state))
        event_state["originator_id"] = id_uuid(originator_id)
        event_state["originator_version"] = version
        from_version = event_state.pop("class_version", 1)
        upcast = from_version < class_version
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        ev = object.__new__(cls)
        _set(ev, "__dict__", event_state)
        if not (upcast or self._odd[0]):
            PLAIN[id(ev)] = ev
        return ev

    def bare(self, originator_id: Any, version: int, topic: str) -> Any:
        """An event of a stored topic with only its `originator_id` and `originator_version`,
        its state not decoded (`read_aggregates`, for readers that need nothing more)."""
        ev = object.__new__(self._class(topic)[0])
        _set(ev, "__dict__", {"originator_id": id_uuid(originator_id),
                              "originator_version": version})
        PLAIN[id(ev)] = ev
        return ev

    def _select(self, sql: str, params: Sequence[Any]) -> list[Any]:
        if self._own is not None:
            return self._own.execute(sql, params).fetchall()
        with self.recorder.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return c.fetchall()

    def _rows(self, start: int, limit: int, stop: int | None,
              topics: Sequence[str] | None = None) -> Sequence[Any]:
        """Stored rows (position, originator_id, version, topic, state) after `start` (only of
        `topics` when given: SQLite only)."""
        if self._sqlite_table is not None:
            sql = (f"SELECT rowid, originator_id, originator_version, topic, state FROM"
                   f" {self._sqlite_table} WHERE rowid>?")
            params: list[Any] = [start]
            if stop is not None:
                sql += " AND rowid<=?"
                params.append(stop)
            if topics is not None:
                sql += f" AND topic IN ({','.join('?' for _ in topics)})"
                params.extend(topics)
            sql += " ORDER BY rowid LIMIT ?"
            params.append(limit)
            return self._select(sql, params)
        if topics is not None:
            raise ValueError("reading by topic needs the SQLite event store")
        return [(n.id, n.originator_id, n.originator_version, n.topic, n.state)
                for n in self.recorder.select_notifications(
                    start=start, limit=limit, stop=stop, inclusive_of_start=False)]

    def topics(self) -> list[str]:
        """Every topic stored (SQLite: one scan of the table, in C)."""
        assert self._sqlite_table is not None
        return sorted(r[0] for r in self._select(
            f"SELECT DISTINCT topic FROM {self._sqlite_table}", ()))

    def read(self, start: int, limit: int, stop: int | None = None,
             topics: Sequence[str] | None = None) -> list[tuple[int, Any]]:
        """Events after position `start` (exclusive), at most `limit`, up to `stop` inclusive
        (only of `topics` when given: SQLite only)."""
        forget_page()  # the last batch's (memory stays bounded)
        decode = self.decode
        return [(r[0], decode(r[1], r[2], r[3], r[4]))
                for r in self._rows(start, limit, stop, topics)]

    def event_at(self, position: int) -> Any | None:
        """The event stored at a position (None: none there). Unlike `read`, it keeps what
        was kept of the page just read (`PLAIN`), whose events may still be written out."""
        rows = self._rows(position - 1, 1, position) if position > 0 else []
        return self.decode(*rows[0][1:]) if rows else None

    def by_aggregate(self) -> bool:
        """Whether `read_aggregates` can read this store (SQLite: its primary key index is
        (originator_id, originator_version))."""
        return self._sqlite_table is not None and self._decode_json is not None

    def read_aggregates(self, after: tuple[str, int] | None, low: str | None,
                        high: str | None, limit: int, stop: int | None,
                        wanted: Callable[[str], int]
                        ) -> tuple[list[tuple[int, Any]], tuple[str, int], int] | None:
        """The stored events in aggregate order (by originator id, then version), with
        positions up to `stop`, of the aggregates whose id text is in [`low`, `high`) (None:
        unbounded), after the (originator id, version) `after`; at most `limit` rows read,
        decoded only where `wanted(topic)` (`BARE`: built by `bare`, false: left out).
        Returns the events (position, event), the key of
        the last row read (the next page's `after`) and the number of rows read; None when
        no row is left."""
        assert self._sqlite_table is not None
        forget_page()
        where: list[str] = []
        params: list[Any] = []
        if after is not None:
            where.append("(originator_id, originator_version) > (?, ?)")
            params.extend(after)
        elif low is not None:
            where.append("originator_id >= ?")
            params.append(low)
        if high is not None:
            where.append("originator_id < ?")
            params.append(high)
        if stop is not None:
            where.append("rowid <= ?")
            params.append(stop)
        sql = (f"SELECT rowid, originator_id, originator_version, topic, state FROM"
               f" {self._sqlite_table}" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY originator_id, originator_version LIMIT ?")
        params.append(limit)
        rows = self._select(sql, params)
        if not rows:
            return None
        decode = self.decode
        events = []
        text = uid = None
        for r in rows:
            how = wanted(r[3])
            if how:
                if r[1] != text:  # an aggregate's events share one id object
                    text, uid = r[1], id_uuid(r[1])
                if how == BARE:
                    events.append((r[0], self.bare(uid, r[2], r[3])))
                else:
                    events.append((r[0], decode(uid, r[2], r[3], r[4])))
        last = rows[-1]
        return events, (last[1], last[2]), len(rows)
