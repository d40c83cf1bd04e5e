"""Streams in the SQLite world: chunks keyed like events, and a high-water mark per writer."""

from __future__ import annotations

from collections.abc import Sequence

from durable._errors import LeaseLost, WorldError
from durable.world import (
    StreamRecord,
)
from worlds.sqlite import _schema
from worlds.sqlite._connection import Connections, _rollback
from worlds.sqlite._sql import (
    _CHUNK_BITS,
    _INSERT_CHUNK,
    _LEASE_HELD,
    _LIST_STREAMS,
    _NEW_STREAM,
    _READ_CHUNKS,
    _SET_WRITER_MARK,
    _STREAM,
    _STREAM_STATE,
    _UPDATE_STREAM,
    _WRITER_MARK,
)


class Streams(Connections):
    """Writing, reading and listing a run's streams."""

    def write_chunks(
        self,
        run_id: str,
        owner: str,
        stream: str,
        writer: str,
        position: int,
        chunks: Sequence[bytes],
        *,
        close: bool = False,
    ) -> bool:
        """Append chunks to a run's stream, if ``owner`` holds the lease (one transaction).

        Chunks at ``position`` + i below the writer's high-water mark were written by an earlier
        attempt and are dropped (see ``World.write_chunks`` for the full contract).

        Returns:
            False if another writer had closed the stream (nothing was written); True otherwise.

        Raises:
            LeaseLost: ``owner`` does not hold the run's lease; nothing was written.
            WorldError: The database failed, or the stream would exceed its size limit.
        """
        with self._transaction(f"writing to stream {stream!r} of run {run_id}") as conn:
            if conn.execute(_LEASE_HELD, (run_id, owner)).fetchone() is None:
                raise LeaseLost(run_id)
            now = self._clock()
            row = conn.execute(_STREAM, (run_id, stream)).fetchone()
            if row is None:
                row = (conn.execute(_NEW_STREAM, (run_id, stream, now)).lastrowid, 0, None)
            stream_no, length, closed_by = row
            if closed_by is not None:
                return bool(closed_by == writer)
            found = conn.execute(_WRITER_MARK, (stream_no, writer)).fetchone()
            mark = found[0] if found is not None else 0
            fresh = chunks[max(0, mark - position) :]
            if length + len(fresh) > _schema.MAX_CHUNKS:
                raise WorldError(
                    f"stream {stream!r} of run {run_id} cannot hold more than "
                    f"{_schema.MAX_CHUNKS} chunks in the durable database {self.path}"
                )
            if position + len(chunks) > mark:
                conn.execute(_SET_WRITER_MARK, (stream_no, writer, position + len(chunks)))
            base = stream_no << _CHUNK_BITS
            conn.executemany(
                _INSERT_CHUNK,
                [(base + length + i, writer, chunk, now) for i, chunk in enumerate(fresh)],
            )
            if fresh or close:
                conn.execute(
                    _UPDATE_STREAM,
                    (length + len(fresh), now, writer if close else None, stream_no),
                )
            return True

    def read_chunks(
        self, run_id: str, stream: str, start: int = 0, limit: int | None = None
    ) -> tuple[list[bytes], bool]:
        """The stream's chunks from index ``start`` (at most ``limit``), and whether it is closed.

        Closed means no chunk can follow the ones returned: the stream was closed, or its run
        finished (or does not exist), and the chunks returned reach its end.
        """
        with self._reading(f"reading stream {stream!r} of run {run_id}") as conn:
            # One read transaction, so that the length and closed flag match the chunks read.
            conn.execute("BEGIN")
            try:
                stream_no, length, closed, ended = conn.execute(
                    _STREAM_STATE, (run_id, stream)
                ).fetchone()
                length = length or 0
                begin = max(start, 0)
                end = length if limit is None else min(length, begin + max(limit, 0))
                chunks: list[bytes] = []
                if stream_no is not None and begin < end:
                    base = stream_no << _CHUNK_BITS
                    rows = conn.execute(_READ_CHUNKS, (base + begin, base + end))
                    chunks = [row[0] for row in rows]
            finally:
                _rollback(conn)
        return chunks, bool(closed or ended) and end >= length

    def list_streams(self, run_id: str) -> list[StreamRecord]:
        """The run's streams, in the order they were first written to."""
        with self._reading(f"listing the streams of run {run_id}") as conn:
            rows = conn.execute(_LIST_STREAMS, (run_id,)).fetchall()
        return [
            StreamRecord(row[0], row[1], row[2], bool(row[3]), row[4], row[5]) for row in rows
        ]
