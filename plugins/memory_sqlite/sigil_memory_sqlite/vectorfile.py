"""The vector side file: every live vector's rowid, 1-bit code and float16 vector, laid out so
a one-shot query (a single ``sigil orchestrate``) reads them with one memory map.

The SQLite file stays the source of truth (``item_embeddings`` and sqlite-vec's ``memory_vec``
are written in the same transaction as the item); ``<db>.vectors`` beside it is a derived copy
that any process can rebuild from it, so losing or damaging it never loses a memory.

Layout (little-endian)::

    header (128 bytes): magic, dims, code words, codes_epoch, generation, removed_seq,
                        committed length, segments, rows, last rowid, tail offset
    base segment        (at offset 128: what the last full rewrite wrote)
    tail segments       (from the tail offset: appended since, in rowid order)
    segment:            m, then rowids int64[m] (increasing across segments),
                        vectors float16[m][dims], codes uint64[words][m] (word-major: a
                        hamming scan reads each 64-bit column contiguously), padded to 8 bytes

Kept consistent with the database, crash-safe:

* Writers publish after each commit, under the database's writer lock (so one at a time and
  never while a transaction is half done): rows past the file's last rowid are appended as a
  segment, ``fdatasync``-ed, and only then does the header (one 128-byte write) move on. A
  crash mid-append leaves bytes past the committed length, ignored and overwritten by the next
  append. Many small tail segments are merged into one, written past the end the same way and
  made current by the header's tail offset (the old ones become dead space). A full rewrite
  (new file, new ``codes_epoch`` after re-centring or reindexing, many removals, a long tail
  or much dead space) goes to a temporary file that is fsynced and renamed over the old one:
  readers holding the old map keep a consistent view.
* Readers check the header against the database in one read transaction: the same
  ``codes_epoch`` (centre) and a generation not ahead of the database's (a restored backup is
  not mistaken for the file's future); removals since the file was written come from the
  ``vector_removed`` log, rows written since (a writer that crashed before publishing) from
  ``item_embeddings``; and the live count must equal the database's ``vector_count``. Anything
  else and the caller rebuilds the file or answers from SQLite alone.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"SIGVEC01"
HEADER = struct.Struct("<8sII16sQQQQQQQ56x")  # 128 bytes
SEGMENT = struct.Struct("<QQ")
STORE_DTYPE = np.float16
#: More tail segments than this and the next publish merges them into one.
MAX_TAIL_SEGMENTS = 16
#: Rows a reader reads from SQLite itself when the file is behind; more and it publishes.
CATCH_UP_ROWS = 4096
#: Rows read per round trip when rewriting the file.
CHUNK = 50_000


def side_path(db_path: Path) -> Path:
    return Path(f"{db_path}.vectors")


class Segment:
    __slots__ = ("codes", "m", "rowids", "vectors")

    def __init__(self, rowids: np.ndarray, vectors: np.ndarray, codes: np.ndarray) -> None:
        self.rowids, self.vectors, self.codes = rowids, vectors, codes
        self.m = len(rowids)


class View:
    """One mapping of the file up to its committed length."""

    def __init__(self, ino: int, header: tuple[Any, ...], segments: list[Segment],
                 keep: Any) -> None:
        self.ino = ino
        (_, self.dims, self.words, epoch, self.generation, self.removed_seq, self.committed,
         _, self.n, self.max_rowid, self.tail) = header
        self.epoch = epoch.decode("ascii", "replace")
        self.segments = segments
        self.keep = keep  # the mmap (numpy views point into it)


def _read_header(fd: int) -> tuple[Any, ...] | None:
    raw = os.pread(fd, HEADER.size, 0)
    if len(raw) != HEADER.size:
        return None
    header = HEADER.unpack(raw)
    return header if header[0] == MAGIC else None


def _layout(m: int, dims: int, words: int) -> tuple[int, int, int, int]:
    """Offsets of rowids, vectors and codes in a segment of m rows, and its padded size."""
    rowids = SEGMENT.size
    vectors = rowids + 8 * m
    codes = vectors + 2 * dims * m
    codes += -codes % 8
    end = codes + 8 * words * m
    return rowids, vectors, codes, end


_VIEWS: dict[str, View] = {}
_VIEWS_LOCK = threading.Lock()


def open_view(path: Path, dims: int, words: int) -> View | None:
    """The file's current committed contents, mapped read-only (reused while unchanged);
    None when it is missing or not a file of this shape."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        header = _read_header(fd)
        if header is None or header[1] != dims or header[2] != words:
            return None
        key = str(path)
        with _VIEWS_LOCK:
            view = _VIEWS.get(key)
            if view is not None and view.ino == st.st_ino and \
                    (view.generation, view.removed_seq, view.committed, view.tail) == (
                        header[4], header[5], header[6], header[10]):
                return view
        committed, nsegs, rows, last_rowid, tail = header[6], header[7], header[8], header[9], \
            header[10]
        if not HEADER.size < committed <= st.st_size or not HEADER.size < tail <= committed \
                or nsegs < 1:
            return None
        mapped = mmap.mmap(fd, committed, access=mmap.ACCESS_READ)
        segments: list[Segment] = []
        offset = HEADER.size
        last = 0
        for n in range(nsegs):
            if n == 1:
                offset = tail
            if offset + SEGMENT.size > committed:
                return None
            m = SEGMENT.unpack_from(mapped, offset)[0]
            o_rows, o_vecs, o_codes, end = _layout(m, dims, words)
            if offset + end > committed:
                return None
            rowids = np.frombuffer(mapped, np.int64, m, offset + o_rows)
            # Ends only (O(1), not a pass over a million rowids per query): zeros or garbage
            # where a crash left them break the order at a segment's ends or the header's
            # last rowid and row count, checked below.
            if m and (rowids[0] <= last or rowids[-1] < rowids[0]):
                return None  # not what a writer wrote: rebuild
            last = int(rowids[-1]) if m else last
            vectors = np.frombuffer(mapped, STORE_DTYPE, m * dims, offset + o_vecs).reshape(m, dims)
            codes = np.frombuffer(mapped, np.uint64, m * words, offset + o_codes).reshape(words, m)
            segments.append(Segment(rowids, vectors, codes))
            offset += end
        if sum(seg.m for seg in segments) != rows or last != last_rowid or (
                nsegs == 1 and tail != offset):
            return None
        view = View(st.st_ino, header, segments, mapped)
        with _VIEWS_LOCK:
            _VIEWS[key] = view
        return view
    finally:
        os.close(fd)


def base_end(view: View) -> int:
    """Where the base segment ends (tail segments start at or after it)."""
    return HEADER.size + _layout(view.segments[0].m, view.dims, view.words)[3]


def read_header(path: Path) -> tuple[Any, ...] | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_header(fd)
    finally:
        os.close(fd)


def forget_views(path: Path) -> None:
    with _VIEWS_LOCK:
        _VIEWS.pop(str(side_path(path)), None)


# ----------------------------------------------------------------------------- writing


def _segment_bytes(rowids: np.ndarray, vectors: np.ndarray, codes_words: np.ndarray,
                   dims: int, words: int) -> bytes:
    m = len(rowids)
    o_rows, o_vecs, o_codes, end = _layout(m, dims, words)
    buf = bytearray(end)
    SEGMENT.pack_into(buf, 0, m, 0)
    buf[o_rows:o_vecs] = np.ascontiguousarray(rowids, dtype=np.int64).tobytes()
    buf[o_vecs:o_vecs + 2 * dims * m] = np.ascontiguousarray(vectors, dtype=STORE_DTYPE).tobytes()
    buf[o_codes:end] = np.ascontiguousarray(codes_words, dtype=np.uint64).tobytes()
    return bytes(buf)


def rewrite(path: Path, conn: Any, dims: int, words: int, encode_words: Any,
            state: dict[str, Any]) -> None:
    """Write the whole file from the database (caller holds the writer lock): a temporary
    file, fsynced, renamed over the old one."""
    tmp = Path(f"{path}.tmp-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        rowids = np.fromiter((r[0] for r in conn.execute(
            "select rowid from item_embeddings order by rowid")), dtype=np.int64)
        m = len(rowids)
        o_rows, o_vecs, o_codes, end = _layout(m, dims, words)
        base = HEADER.size
        os.ftruncate(fd, base + end)
        os.pwrite(fd, SEGMENT.pack(m, 0), base)
        os.pwrite(fd, rowids.tobytes(), base + o_rows)
        codes = np.zeros((words, m), dtype=np.uint64)
        done = 0
        cur = conn.execute("select rowid, embedding from item_embeddings order by rowid")
        while rows := cur.fetchmany(CHUNK):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            if not np.array_equal(ids, rowids[done:done + len(rows)]):
                raise RuntimeError("item_embeddings changed during the rewrite")
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=STORE_DTYPE).reshape(
                len(rows), dims)
            os.pwrite(fd, vecs.tobytes(), base + o_vecs + 2 * dims * done)
            codes[:, done:done + len(rows)] = encode_words(vecs).T
            done += len(rows)
        if done != m:
            raise RuntimeError("item_embeddings changed during the rewrite")
        os.pwrite(fd, codes.tobytes(), base + o_codes)
        os.pwrite(fd, _header(dims, words, state, base + end, 1, m,
                              int(rowids[-1]) if m else 0, base + end), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _header(dims: int, words: int, state: dict[str, Any], committed: int, nsegs: int,
            rows: int, last_rowid: int, tail: int) -> bytes:
    return HEADER.pack(MAGIC, dims, words, state["epoch"].encode("ascii")[:16].ljust(16),
                       state["generation"], state["removed_seq"], committed, nsegs, rows,
                       last_rowid, tail)


def append(path: Path, view: View, conn: Any, dims: int, words: int, encode_words: Any,
           state: dict[str, Any]) -> None:
    """Append the rows past the file's last rowid as one segment (caller holds the writer
    lock), merging the tail segments into one when they are many; then move the header on."""
    rows = conn.execute("select rowid, embedding from item_embeddings where rowid > ? "
                        "order by rowid", (view.max_rowid,)).fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=STORE_DTYPE).reshape(
        len(rows), dims)
    fd = os.open(path, os.O_RDWR)
    try:
        nsegs, committed, tail = len(view.segments), view.committed, view.tail
        if rows and nsegs > MAX_TAIL_SEGMENTS:
            # The tail (and the new rows) as one segment past the end; the old tail segments
            # become dead space, reclaimed by the next full rewrite.
            old = view.segments[1:]
            data = _segment_bytes(
                np.concatenate([*(seg.rowids for seg in old), ids]),
                np.concatenate([*(seg.vectors for seg in old), vecs]),
                np.concatenate([*(seg.codes for seg in old), encode_words(vecs).T], axis=1),
                dims, words)
            tail, nsegs = committed, 1
        elif rows:
            data = _segment_bytes(ids, vecs, encode_words(vecs).T, dims, words)
        else:
            data = b""
        if data:
            os.pwrite(fd, data, committed)
            os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
            committed += len(data)
            nsegs += 1
        # One 128-byte write: the new segment (if any) becomes visible with it. Not fsynced:
        # lost in a crash, the file only looks behind and readers catch up from SQLite.
        state = {**state, "removed_seq": view.removed_seq}
        os.pwrite(fd, _header(dims, words, state, committed, nsegs, view.n + len(rows),
                              int(ids[-1]) if len(ids) else view.max_rowid, tail), 0)
    finally:
        os.close(fd)
