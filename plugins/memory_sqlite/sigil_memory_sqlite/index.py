"""Vector search: binary-quantised pre-filtering, then re-scoring of the candidates.

Storage (all in the one SQLite file, written in the same transaction as the item):

* ``item_embeddings(rowid, embedding)``: each vector as float16 (768 bytes at 384 dims; the
  cosine of two normalised vectors moves by less than 1e-4 against float32, far below the gap
  between neighbours, and the row costs half as much to write and to read back);
* ``memory_vec``: a sqlite-vec ``vec0`` table of 1-bit codes (sign of the vector minus a
  stored centre), the quantised index SQLite itself can search (hamming KNN). sqlite-vec is kept
  (rather than codes in a table of our own) because it is the maintained SQLite extension for
  vectors: its ``vec0`` table is written in the item's own transaction (WAL, crash-safe, one
  file to copy), answers KNN in SQL for any process that cannot use the side file below, and
  its chunked storage lets a process read every code at once;
* ``vector_removed(seq, rowid)``: a log of removed vectors, so a process holding the vectors
  in memory can follow deletions incrementally.

A query takes the C nearest codes by hamming distance (C grows with the store: ``max(25k,
N/100)``), scores those C candidates by their float vectors and keeps the k best by cosine.
Stores of up to :data:`EXACT_LIMIT` vectors skip the pre-filter and score every vector.

Four ways to answer, chosen per process:

* **exact**: stores of up to :data:`EXACT_LIMIT` vectors are held in memory at once and every
  vector is scored.
* **file** (the first :data:`RESIDENT_AFTER` pre-filtered queries of a process, e.g. a
  one-shot ``sigil orchestrate``): the side file ``<db>.vectors`` (:mod:`.vectorfile`: rowids,
  word-major codes and float16 vectors, derived from the database, kept consistent with it by
  every writer and checked by every reader) is memory-mapped; numpy scans its codes and
  re-scores the candidates' vectors from the same map. Nothing is copied out of SQLite.
* **codes** (when the side file cannot be used, e.g. a read-only directory): the 1-bit codes
  are read straight from vec0's own storage (a few ms per 100k vectors, kept until the next
  write), scanned by numpy, and the candidates' vectors read back from ``item_embeddings``.
  When vec0's storage is not the layout this module knows, sqlite-vec's hamming KNN gives the
  candidates instead (slower for large C).
* **resident** (after that): the process keeps every vector in memory (float16 matrix plus the
  packed codes, word-major so numpy scans each 64-bit column contiguously), shared by every
  store opened on the same file in the process and kept in sync incrementally: new rows are
  appended, logged removals tombstoned; only a change of centre (``codes_epoch``) reloads
  everything. A query is then a numpy hamming scan, a partial sort and one small matrix
  product: no SQLite round trip beyond two meta reads.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

import numpy as np

from . import vectorfile

#: Below this many vectors every query scores all of them (no pre-filter).
EXACT_LIMIT = 2_000
#: sqlite-vec answers at most this many neighbours per KNN query.
VEC0_MAX_K = 4096
#: On-disk and in-memory precision of the vectors used for re-scoring.
STORE_DTYPE = np.float16
#: The layout of the vector tables this module writes (1: float32 ``item_vectors`` + codes).
LAYOUT = "2"
#: Queries of a process answered from the codes alone before it holds every vector in memory:
#: loading costs about as much as ten such queries, and a one-shot ``sigil orchestrate``
#: (one retrieval, a few consolidation look-ups) should not pay it.
RESIDENT_AFTER = 8
#: Most candidates whose vectors a one-shot query reads back from SQLite.
ONE_SHOT_MAX = 4096
#: Rows fetched per round trip when loading vectors into memory.
LOAD_CHUNK = 50_000


def candidates_for(n: int, k: int) -> int:
    return max(k * 25, n // 100)


class Resident:
    """One database's vectors held in memory by this process (see the module docstring).

    Arrays have spare capacity so appending a few rows does not copy the whole matrix;
    removed rows are tombstoned (``dead``) and compacted away once they are many.
    """

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.words = (dimensions + 63) // 64
        self.n = 0
        self.rowids = np.empty(0, dtype=np.int64)
        self.codes = np.empty((self.words, 0), dtype=np.uint64)
        self.vectors = np.empty((0, dimensions), dtype=STORE_DTYPE)
        self.dead = np.zeros(0, dtype=bool)
        self.n_dead = 0
        self.generation: str | None = None
        self.epoch: str | None = None
        self.seq = 0
        self.loaded = False
        self.cold_queries = 0
        #: ((generation, epoch), (rowids, word-major codes)) read from vec0 for cold queries.
        self.codes_only: tuple[Any, tuple[np.ndarray, np.ndarray]] | None = None
        #: How many times the whole file was read (observability: appends do not count).
        self.full_loads = 0
        self.lock = threading.Lock()

    # ----------------------------------------------------------------- building

    def clear(self) -> None:
        """Forget every vector (before a full load); the counters survive."""
        full_loads, cold = self.full_loads, self.cold_queries
        self.__init__(self.dimensions)  # type: ignore[misc]
        self.full_loads, self.cold_queries = full_loads, cold

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        cap = len(self.rowids)
        if need <= cap:
            return
        cap = max(need, int(cap * 1.5) + 1024)
        rowids = np.empty(cap, dtype=np.int64)
        codes = np.zeros((self.words, cap), dtype=np.uint64)
        vectors = np.empty((cap, self.dimensions), dtype=STORE_DTYPE)
        dead = np.zeros(cap, dtype=bool)
        n = self.n
        rowids[:n], codes[:, :n], vectors[:n], dead[:n] = (
            self.rowids[:n], self.codes[:, :n], self.vectors[:n], self.dead[:n])
        self.rowids, self.codes, self.vectors, self.dead = rowids, codes, vectors, dead

    def append(self, rowids: np.ndarray, vectors: np.ndarray, centre: np.ndarray,
               codes: np.ndarray | None = None) -> None:
        m = len(rowids)
        if not m:
            return
        self._reserve(m)
        n = self.n
        self.rowids[n:n + m] = rowids
        self.vectors[n:n + m] = vectors
        if codes is None:
            codes = encode(vectors, centre)
        self.codes[:, n:n + m] = pack_words(codes, self.words).T
        self.dead[n:n + m] = False
        self.n = n + m

    def remove(self, rowids: np.ndarray) -> None:
        live = self.rowids[: self.n]
        for rowid in rowids.tolist():
            lo = int(np.searchsorted(live, rowid, "left"))
            hi = int(np.searchsorted(live, rowid, "right"))
            for pos in range(lo, hi):
                if not self.dead[pos]:
                    self.dead[pos] = True
                    self.n_dead += 1
        if self.n_dead > max(1024, self.n // 8):
            self._compact()

    def _compact(self) -> None:
        keep = np.flatnonzero(~self.dead[: self.n])
        m = len(keep)
        self.rowids[:m] = self.rowids[keep]
        self.vectors[:m] = self.vectors[keep]
        self.codes[:, :m] = self.codes[:, keep]
        self.dead[:m] = False
        self.n, self.n_dead = m, 0

    def max_live_rowid(self) -> int:
        if self.n == 0:
            return 0
        if self.n_dead == 0:
            return int(self.rowids[self.n - 1])  # appended in rowid order
        live = self.rowids[: self.n][~self.dead[: self.n]]
        return int(live[-1]) if len(live) else 0

    # ----------------------------------------------------------------- searching

    def scores(self, q: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        """Cosine of ``q`` (normalised) with the rows at ``positions`` (all rows when None)."""
        out = np.empty(self.n if positions is None else len(positions), dtype=np.float32)
        score_rows(self.vectors[: self.n], positions, q, out)
        return out



#: Columns (codes) or rows (vectors) a scan handles per numpy call: the temporaries stay in the
#: CPU's cache and are reused, where whole-array temporaries (800 KB per word at 100k codes, a
#: float32 copy of every candidate) are fresh memory the kernel maps page by page in a new
#: process. One-shot query at 100k: hamming 2.7 -> 1.35 ms, re-scoring 4.3 -> 2.0 ms.
SCAN_BLOCK = 4096
RESCORE_BLOCK = 64
#: Histogram bins of :func:`nearest`: hamming distances of codes of up to 4,095 bits, and
#: removed rows (marked with the uint16 maximum) in the last.
BINS = 4096


def hamming(codes: np.ndarray, n: int, code_words: np.ndarray,
            out: np.ndarray | None = None) -> np.ndarray:
    """Hamming distance of one code (uint64 words) to the first ``n`` columns of a word-major
    code matrix (into ``out`` when given): each 64-bit column read contiguously, a block of
    :data:`SCAN_BLOCK` columns at a time."""
    dist = np.empty(n, dtype=np.uint16) if out is None else out
    width = min(n, SCAN_BLOCK)
    xor = np.empty(width, dtype=np.uint64)
    count = np.empty(width, dtype=np.uint8)
    for lo in range(0, n, SCAN_BLOCK):
        hi = min(n, lo + SCAN_BLOCK)
        block, x, c = dist[lo:hi], xor[: hi - lo], count[: hi - lo]
        for j in range(codes.shape[0]):
            np.bitwise_xor(codes[j, lo:hi], code_words[j], out=x)
            np.bitwise_count(x, out=c)
            if j:
                np.add(block, c, out=block)
            else:
                block[...] = c
    return dist


def score_rows(vectors: np.ndarray, positions: np.ndarray | None, q: np.ndarray,
               out: np.ndarray) -> None:
    """``out[i]`` = float32 dot product of ``q`` with row ``positions[i]`` of ``vectors``
    (float16; every row in order when ``positions`` is None), :data:`RESCORE_BLOCK` rows at a
    time through one small float32 buffer."""
    total = len(out)
    buf = np.empty((min(total, RESCORE_BLOCK), vectors.shape[1]), dtype=np.float32)
    for lo in range(0, total, RESCORE_BLOCK):
        hi = min(total, lo + RESCORE_BLOCK)
        rows = buf[: hi - lo]
        rows[...] = vectors[lo:hi] if positions is None else vectors[positions[lo:hi]]
        np.dot(rows, q, out=out[lo:hi])


def nearest(dist: np.ndarray, wanted: int) -> np.ndarray:
    """Positions of the ``wanted`` smallest distances.

    Distances are small integers, so a histogram finds the cut-off distance and two
    comparisons select (every code below it, then the first of those at it): about 3x faster
    than a partial sort over a million codes.
    """
    if wanted >= len(dist):
        return np.arange(len(dist))
    # The histogram a block at a time: np.bincount of the whole array would first copy it
    # as int64 (800 KB of fresh memory at 100k codes, ~0.6 ms of page faults in a new
    # process). Removed rows (the dtype's maximum) share the last bin, above every distance.
    top = min(int(dist.max()), BINS - 1)
    hist = np.zeros(top + 1, dtype=np.int64)
    clipped = np.empty(min(len(dist), SCAN_BLOCK), dtype=dist.dtype)
    for lo in range(0, len(dist), SCAN_BLOCK):
        block = dist[lo:lo + SCAN_BLOCK]
        hist += np.bincount(np.minimum(block, top, out=clipped[: len(block)]),
                            minlength=top + 1)
    counts = np.cumsum(hist)
    cut = int(np.searchsorted(counts, wanted))
    below = np.flatnonzero(dist < cut)
    at = np.flatnonzero(dist == cut)[: wanted - len(below)]
    return np.concatenate([below, at])


def encode(vectors: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """1-bit codes (sign of vector minus centre), one row of packed bytes per vector."""
    return np.packbits(np.asarray(vectors, dtype=np.float32) - centre > 0, axis=-1)


def pack_words(codes: np.ndarray, words: int) -> np.ndarray:
    """Packed byte codes (n x bytes) as n x ``words`` uint64, zero-padded."""
    n, nbytes = codes.shape
    if nbytes != words * 8:
        padded = np.zeros((n, words * 8), dtype=np.uint8)
        padded[:, :nbytes] = codes
        codes = padded
    return np.ascontiguousarray(codes).view(np.uint64).reshape(n, words)


#: Process-wide resident indexes, one per (database file, dimensions).
_RESIDENT: dict[tuple[str, int], Resident] = {}
_RESIDENT_LOCK = threading.Lock()


def resident_for(path: Any, dimensions: int) -> Resident:
    key = (str(path), int(dimensions))
    with _RESIDENT_LOCK:
        res = _RESIDENT.get(key)
        if res is None:
            res = _RESIDENT[key] = Resident(int(dimensions))
        return res


def forget_resident(path: Any) -> None:
    """Drop the in-memory copies of one file (tests, or a caller that wants the memory back)."""
    with _RESIDENT_LOCK:
        for key in [k for k in _RESIDENT if k[0] == str(path)]:
            del _RESIDENT[key]
    vectorfile.forget_views(path)


class VectorIndex:
    """The vector side of one database; see the module docstring."""

    def __init__(self, db: Any, dimensions: int) -> None:
        self.db = db
        self.dimensions = dimensions
        self._centre: np.ndarray | None = None
        self._centre_generation: str | None = None
        self.resident = resident_for(db.path, dimensions)
        self.last_path = ""
        self.side = vectorfile.side_path(db.path)
        #: The side file could not be written here (e.g. a read-only directory): not retried.
        self.side_failed = False

    # ----------------------------------------------------------------- schema

    @staticmethod
    def create_tables(conn: Any, dimensions: int) -> None:
        conn.execute("create table if not exists item_embeddings "
                     "(rowid integer primary key, embedding blob not null)")
        conn.execute("create table if not exists vector_removed "
                     "(seq integer primary key autoincrement, rowid integer not null)")
        conn.execute(f"create virtual table if not exists memory_vec using vec0(code bit[{dimensions}])")
        set_meta(conn, "vector_layout", LAYOUT)
        new_epoch(conn)

    @staticmethod
    def drop_tables(conn: Any) -> None:
        for table in ("item_embeddings", "vector_removed", "memory_vec",
                      "item_vectors", "item_codes"):  # the last two: layout 1
            conn.execute(f"drop table if exists {table}")

    def ensure_layout(self) -> None:
        """Bring a database written by an older version of this module to :data:`LAYOUT`:
        layout 1 kept float32 vectors in ``item_vectors`` and codes in ``item_codes``."""
        if self.db.meta("vector_layout") == LAYOUT:
            return

        def upgrade(conn: Any) -> None:
            row = conn.execute("select value from meta where key = 'vector_layout'").fetchone()
            if row and row[0] == LAYOUT:
                return
            old = conn.execute("select 1 from sqlite_master where name = 'item_vectors'").fetchone()
            conn.execute("drop table if exists memory_vec")
            conn.execute("drop table if exists item_codes")
            VectorIndex.create_tables(conn, self.dimensions)
            if old:
                cur = conn.execute("select rowid, embedding from item_vectors order by rowid")
                while rows := cur.fetchmany(LOAD_CHUNK):
                    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
                    conn.executemany(
                        "insert into item_embeddings(rowid, embedding) values (?, ?)",
                        zip((r[0] for r in rows), _rows_bytes(
                            vecs.reshape(len(rows), self.dimensions).astype(STORE_DTYPE))))
                conn.execute("drop table item_vectors")
            self.recentre(conn)
            bump_generation(conn)

        self.db.write(upgrade)

    # ----------------------------------------------------------------- writing

    def centre(self) -> np.ndarray:
        gen = self.db.meta("generation", "0")
        if self._centre is None or gen != self._centre_generation:
            row = self.db.conn.execute("select value from meta where key = 'centre'").fetchone()
            self._centre = parse_centre(row[0] if row else None, self.dimensions)
            self._centre_generation = gen
        return self._centre

    def reset_centre(self) -> None:
        self._centre = np.zeros(self.dimensions, dtype=np.float32)

    def add(self, conn: Any, rowids: list[int], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        codes = encode(vectors, self.centre())
        conn.executemany("insert into item_embeddings(rowid, embedding) values (?, ?)",
                         zip(rowids, _rows_bytes(vectors.astype(STORE_DTYPE))))
        conn.executemany("insert into memory_vec(rowid, code) values (?, vec_bit(?))",
                         zip(rowids, _rows_bytes(codes)))
        conn.execute("insert into meta(key, value) values ('vector_count', ?) on conflict(key) do "
                     "update set value = cast(value as integer) + ?", (len(rowids), len(rowids)))

    def remove(self, conn: Any, rowid: int) -> None:
        cur = conn.execute("delete from item_embeddings where rowid = ?", (rowid,))
        if cur.rowcount:
            conn.execute("delete from memory_vec where rowid = ?", (rowid,))
            conn.execute("insert into vector_removed(rowid) values (?)", (rowid,))
            conn.execute("update meta set value = cast(value as integer) - 1 "
                         "where key = 'vector_count'")

    def recentre(self, conn: Any, sample: int = 65_536) -> None:
        """Recompute the centre (mean of up to ``sample`` stored vectors) and rewrite every
        code in ``memory_vec``.

        Binarising around the data's mean rather than zero keeps the codes informative for
        embedders whose vectors share a common direction (sentence models do).
        """
        total = np.zeros(self.dimensions, dtype=np.float64)
        n = 0
        cur = conn.execute("select embedding from item_embeddings order by rowid limit ?",
                           (sample,))
        while rows := cur.fetchmany(LOAD_CHUNK):
            block = np.frombuffer(b"".join(r[0] for r in rows), dtype=STORE_DTYPE)
            total += block.reshape(len(rows), self.dimensions).astype(np.float64).sum(axis=0)
            n += len(rows)
        centre = (total / max(n, 1)).astype(np.float32)
        set_meta(conn, "centre", ",".join(f"{x:.6g}" for x in centre))
        set_meta(conn, "centre_n", conn.execute(
            "select count(*) from item_embeddings").fetchone()[0])
        # Rebuilding the vec0 table whole is faster than rewriting it row by row.
        conn.execute("drop table if exists memory_vec")
        conn.execute(f"create virtual table memory_vec using vec0(code bit[{self.dimensions}])")
        cur = conn.execute("select rowid, embedding from item_embeddings order by rowid")
        while rows := cur.fetchmany(LOAD_CHUNK):
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=STORE_DTYPE).reshape(
                len(rows), self.dimensions)
            conn.executemany("insert into memory_vec(rowid, code) values (?, vec_bit(?))",
                             zip((r[0] for r in rows), _rows_bytes(encode(vecs, centre))))
        conn.execute("delete from vector_removed")
        new_epoch(conn)
        self._centre = parse_centre(",".join(f"{x:.6g}" for x in centre), self.dimensions)

    # ----------------------------------------------------------------- reading

    def count(self) -> int:
        return int(self.db.meta("vector_count", "0") or 0)

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k nearest stored vectors by cosine: ``[(rowid, similarity)]``, best first."""
        n = self.count()
        if n == 0 or k <= 0:
            return []
        q = np.asarray(query, dtype=np.float32)
        norm = float(np.linalg.norm(q))
        if norm == 0.0:
            return []
        q = q / norm
        wanted = candidates_for(n, k)
        res = self.resident
        with res.lock:
            small = n <= EXACT_LIMIT or wanted >= n
            if not res.loaded:
                res.cold_queries += 1
            if small or res.loaded or res.cold_queries > RESIDENT_AFTER:
                # Small stores load at once (cheap); large ones once this process has shown
                # it searches repeatedly (a long-lived host, a benchmark).
                self.sync()
                if small:
                    self.last_path = "exact"
                    return self._best_resident(None, q, k)
                self.last_path = "quantised-numpy"
                code = pack_words(encode(q[None, :], self.centre()), res.words)[0]
                dist = hamming(res.codes, res.n, code)
                if res.n_dead:
                    dist[res.dead[: res.n]] = np.iinfo(np.uint16).max
                return self._best_resident(nearest(dist, wanted), q, k)
            code = encode(q[None, :], self.centre())[0]
            try:
                found = self._search_file(q, code, wanted, k)
            except Exception:  # noqa: BLE001 - e.g. no pread/mmap here: SQLite alone answers
                self.side_failed, found = True, None
            if found is not None:
                self.last_path = "quantised-file"
                return found
            codes = self._vec0_codes(res)
        if codes is not None:
            # Codes only (48 bytes a vector) scanned by numpy, candidates' vectors read back.
            self.last_path = "quantised-vec0-codes"
            ids, packed = codes
            dist = hamming(packed, len(ids), pack_words(code[None, :], res.words)[0])
            # Each candidate is a row read back from SQLite here: at most ONE_SHOT_MAX of them
            # (recall@20 at 1M items stays above 0.95; the resident path takes all C).
            cand = ids[nearest(dist, min(wanted, ONE_SHOT_MAX))]
            marks = ",".join(map(str, cand.tolist()))
        else:
            # sqlite-vec's own hamming KNN: slower for large k, but needs nothing else.
            self.last_path = "quantised-sqlite-vec"
            rows = self.db.query(
                "select rowid from memory_vec where code match vec_bit(?) and k = ?",
                (code.tobytes(), min(wanted, VEC0_MAX_K)),
            )
            marks = ",".join(str(int(r[0])) for r in rows)
        rows = self.db.query(f"select rowid, embedding from item_embeddings "
                             f"where rowid in ({marks})") if marks else []
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=STORE_DTYPE).reshape(
            len(rows), self.dimensions)
        return _best(ids, mat.astype(np.float32) @ q, k)

    # ----------------------------------------------------------------- side file

    def _state(self, conn: Any) -> dict[str, Any]:
        meta = dict(conn.execute("select key, value from meta where key in "
                                 "('codes_epoch', 'generation', 'vector_count')").fetchall())
        return {"epoch": meta.get("codes_epoch") or "", "generation": int(meta.get(
                    "generation") or 0), "count": int(meta.get("vector_count") or 0),
                "removed_seq": conn.execute("select coalesce(max(seq), 0) from "
                                            "vector_removed").fetchone()[0]}

    def _encode_words(self, vectors: np.ndarray) -> np.ndarray:
        words = (self.dimensions + 63) // 64
        return pack_words(encode(vectors, self.centre()), words)

    def publish(self, conn: Any, *, rewrite: bool = False) -> None:
        """Bring the side file (:mod:`.vectorfile`) up to date with the database: called after
        each commit, with the writer lock held. Append what is new; rewrite it whole when it
        is missing, of another centre, ahead of the database (a restored backup), fragmented
        or holding many removed rows."""
        if self.side_failed:
            return
        words = (self.dimensions + 63) // 64
        began = not conn.in_transaction
        if began:
            conn.execute("begin")
        try:
            state = self._state(conn)
            header = None if rewrite else vectorfile.read_header(self.side)
            if header is not None and header[4] == state["generation"] and \
                    header[3].decode("ascii", "replace").strip() == state["epoch"]:
                return  # nothing new (the common case: one small read)
            view = None if rewrite else vectorfile.open_view(self.side, self.dimensions, words)
            removed = 0 if view is None else conn.execute(
                "select count(*) from vector_removed where seq > ?",
                (view.removed_seq,)).fetchone()[0]
            try:
                if (view is None or view.epoch.strip() != state["epoch"]
                        or view.generation > state["generation"]
                        or removed > max(1024, view.n // 8)
                        # the tail as big as the base, or as much dead space as live data:
                        # rewriting then costs O(1) per row appended since the last rewrite
                        or view.n - view.segments[0].m > max(65_536, view.segments[0].m)
                        or view.tail - vectorfile.base_end(view) > vectorfile.base_end(view)):
                    vectorfile.rewrite(self.side, conn, self.dimensions, words,
                                       self._encode_words, state)
                else:
                    vectorfile.append(self.side, view, conn, self.dimensions, words,
                                      self._encode_words, state)
            except OSError:
                self.side_failed = True  # SQLite alone answers (vec0's codes, its KNN)
        finally:
            if began:
                conn.execute("commit")

    def _search_file(self, q: np.ndarray, code: np.ndarray, wanted: int,
                     k: int) -> list[tuple[int, float]] | None:
        """The cold path on the side file: hamming over its codes, the candidates re-scored
        with its float16 vectors. None when it cannot answer consistently with the database
        (after one attempt to bring it up to date)."""
        if self.side_failed:
            return None
        words = (self.dimensions + 63) // 64
        code_words = pack_words(code[None, :], words)[0]
        conn = self.db.conn
        for attempt in range(2):
            view = vectorfile.open_view(self.side, self.dimensions, words)
            consistent = False
            began = not conn.in_transaction
            if began:
                conn.execute("begin")
            try:
                state = self._state(conn)
                if view is not None and view.epoch.strip() == state["epoch"] and \
                        view.generation <= state["generation"]:
                    removed = np.fromiter((r[0] for r in conn.execute(
                        "select rowid from vector_removed where seq > ?", (view.removed_seq,))),
                        dtype=np.int64)
                    extra: list[Any] = [] if view.generation == state["generation"] else \
                        conn.execute("select rowid, embedding from item_embeddings where "
                                     "rowid > ? order by rowid limit ?",
                                     (view.max_rowid, vectorfile.CATCH_UP_ROWS + 1)).fetchall()
                    consistent = len(extra) <= vectorfile.CATCH_UP_ROWS
            finally:
                if began:
                    conn.execute("commit")
            if consistent and view is not None:
                dead_parts, start = [], 0
                for seg in view.segments:
                    pos = np.searchsorted(seg.rowids, removed)
                    inside = pos < seg.m
                    pos = pos[inside]
                    dead_parts.append(start + pos[seg.rowids[pos] == removed[inside]])
                    start += seg.m
                dead = np.sort(np.concatenate(dead_parts))
                # Distinct positions (np.unique would import numpy.ma: 20 ms in a new process).
                dead = dead[np.concatenate(([True], dead[1:] != dead[:-1]))] if len(dead) \
                    else dead
                if view.n - len(dead) + len(extra) == state["count"]:
                    return self._scan_file(view, dead, extra, q, code_words, wanted, k)
            if attempt == 0:
                try:
                    with self.db._writer_lock():
                        # Unreadable, or readable but not matching the database (e.g. a
                        # reused rowid): rewritten; otherwise only brought up to date.
                        self.publish(conn, rewrite=view is None or consistent)
                except Exception:  # noqa: BLE001 - SQLite alone answers
                    self.side_failed = True
                    return None
        return None

    def _scan_file(self, view: Any, dead: np.ndarray, extra: list[Any], q: np.ndarray,
                   code_words: np.ndarray, wanted: int, k: int) -> list[tuple[int, float]]:
        n = view.n + len(extra)
        dist = np.empty(n, dtype=np.uint16)
        start = 0
        for seg in view.segments:
            hamming(seg.codes, seg.m, code_words, dist[start:start + seg.m])
            start += seg.m
        extra_ids = np.fromiter((r[0] for r in extra), dtype=np.int64, count=len(extra))
        extra_vecs = np.frombuffer(b"".join(r[1] for r in extra), dtype=STORE_DTYPE).reshape(
            len(extra), self.dimensions)
        if len(extra):
            dist[view.n:] = np.bitwise_count(
                self._encode_words(extra_vecs) ^ code_words).sum(axis=1)
        if len(dead):
            dist[dead] = np.iinfo(np.uint16).max
        cand = np.sort(nearest(dist, min(wanted, n - len(dead))))
        scores = np.empty(len(cand), dtype=np.float32)
        ids = []
        start = 0
        for seg in [*view.segments, vectorfile.Segment(extra_ids, extra_vecs, np.empty((0, 0)))]:
            lo, hi = np.searchsorted(cand, [start, start + seg.m])
            sel = cand[lo:hi] - start
            ids.append(seg.rowids[sel])
            score_rows(seg.vectors, sel, q, scores[lo:hi])
            start += seg.m
        return _best(np.concatenate(ids), scores, k)

    def _vec0_codes(self, res: Resident) -> tuple[np.ndarray, np.ndarray] | None:
        """The codes of vec0's storage, word-major, kept until the next write (any process):
        cheap to read (a few ms per 100k vectors), so not worth following incrementally."""
        token = (self.db.meta("generation", "0"), self.db.meta("codes_epoch"))
        if res.codes_only is not None and res.codes_only[0] == token:
            return res.codes_only[1]
        shadow = read_vec0_codes(self.db, self.dimensions)
        if shadow is None:
            res.codes_only = None
            return None
        ids, codes = shadow
        packed = (ids, np.ascontiguousarray(pack_words(codes, res.words).T))
        res.codes_only = (token, packed)
        return packed

    def _best_resident(self, positions: np.ndarray | None, q: np.ndarray,
                       k: int) -> list[tuple[int, float]]:
        res = self.resident
        scores = res.scores(q, positions)
        if positions is None:
            positions = np.arange(res.n)
            if res.n_dead:
                scores[res.dead[: res.n]] = -np.inf
        ids = res.rowids[positions]
        if res.n_dead:
            alive = ~res.dead[positions]
            ids, scores = ids[alive], scores[alive]
        return _best(ids, scores, k)

    def sync(self) -> None:
        """Bring this process's resident copy up to date with the file (caller holds the lock).

        One meta read when nothing changed; otherwise, in one read transaction: logged
        removals since the last sync are tombstoned and rows past the highest live rowid
        appended (SQLite only reuses a rowid above every live one, so nothing new hides
        below it). A new ``codes_epoch`` (re-centred or re-indexed) reloads everything.
        """
        res = self.resident
        generation = self.db.meta("generation", "0")
        if res.loaded and res.generation == generation and \
                res.epoch == self.db.meta("codes_epoch"):
            return
        conn = self.db.conn
        began = not conn.in_transaction
        if began:
            conn.execute("begin")
        try:
            generation = self.db.meta("generation", "0")
            epoch = self.db.meta("codes_epoch")
            centre = self.centre()
            if not res.loaded or epoch != res.epoch:
                res.clear()
                res.full_loads += 1
                after = 0
                res.seq = conn.execute("select coalesce(max(seq), 0) from vector_removed"
                                       ).fetchone()[0]
            else:
                removed = conn.execute("select seq, rowid from vector_removed where seq > ? "
                                       "order by seq", (res.seq,)).fetchall()
                if removed:
                    res.remove(np.array([r[1] for r in removed], dtype=np.int64))
                    res.seq = removed[-1][0]
                after = res.max_live_rowid()
            # A full load takes the codes from vec0's storage rather than re-encoding every
            # vector (float16 arithmetic is slow in numpy); appends encode their few rows.
            shadow = read_vec0_codes(self.db, self.dimensions) if after == 0 else None
            offset = 0
            cur = conn.execute("select rowid, embedding from item_embeddings where rowid > ? "
                               "order by rowid", (after,))
            while rows := cur.fetchmany(LOAD_CHUNK):
                ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=STORE_DTYPE).reshape(
                    len(rows), self.dimensions)
                codes = None
                if shadow is not None and np.array_equal(
                        shadow[0][offset:offset + len(ids)], ids):
                    codes = shadow[1][offset:offset + len(ids)]
                offset += len(ids)
                res.append(ids, vecs, centre, codes)
        finally:
            if began:
                conn.execute("commit")
        res.generation, res.epoch, res.loaded = generation, epoch, True


def read_vec0_codes(db: Any, dimensions: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Every code in ``memory_vec`` as ``(rowids, packed codes)`` sorted by rowid, read from
    sqlite-vec's chunk tables (``memory_vec_chunks``: validity bitmap and rowids per chunk of
    1024; ``memory_vec_vector_chunks00``: the packed codes), ~100x faster than asking vec0 for
    a thousand nearest neighbours.

    That storage is sqlite-vec's, not a public API: anything unexpected (tables, blob sizes,
    a count that does not match ours) returns None and the caller uses vec0's KNN instead.
    """
    code_bytes = (dimensions + 7) // 8
    try:
        chunks = db.conn.execute(
            "select c.size, c.validity, c.rowids, v.vectors from memory_vec_chunks c "
            "join memory_vec_vector_chunks00 v on v.rowid = c.chunk_id order by c.chunk_id"
        ).fetchall()
        expected = int(db.meta("vector_count", "0") or 0)
    except Exception:  # noqa: BLE001 - another sqlite-vec storage layout
        return None
    ids: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    for size, validity, rowids, vectors in chunks:
        if (not isinstance(size, int) or len(rowids) != size * 8 or len(validity) * 8 < size
                or len(vectors) != size * code_bytes):
            return None
        valid = np.unpackbits(np.frombuffer(validity, dtype=np.uint8),
                              bitorder="little")[:size].astype(bool)
        ids.append(np.frombuffer(rowids, dtype=np.int64)[valid])
        codes.append(np.frombuffer(vectors, dtype=np.uint8).reshape(size, code_bytes)[valid])
    if not ids:
        return None
    all_ids = np.concatenate(ids)
    if len(all_ids) != expected:
        return None
    all_codes = np.concatenate(codes)
    if len(all_ids) > 1 and not bool(np.all(all_ids[1:] > all_ids[:-1])):
        # vec0 fills chunks in insertion order: rowids come sorted unless written out of order.
        order = np.argsort(all_ids, kind="stable")
        all_ids, all_codes = all_ids[order], all_codes[order]
    return all_ids, all_codes


def _best(ids: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    if len(ids) == 0:
        return []
    top = min(k, len(ids))
    best = np.argpartition(-scores, top - 1)[:top] if top < len(ids) else np.arange(len(ids))
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(ids[i]), float(scores[i])) for i in best if np.isfinite(scores[i])]


def _rows_bytes(matrix: np.ndarray) -> list[bytes]:
    """Each row of a 2-D array as bytes, cheaper than ``row.tobytes()`` per row."""
    matrix = np.ascontiguousarray(matrix)
    if not len(matrix):
        return []
    width = matrix.shape[1] * matrix.itemsize
    raw = matrix.tobytes()
    return [raw[i:i + width] for i in range(0, len(raw), width)]


def parse_centre(text: str | None, dimensions: int) -> np.ndarray:
    if text:
        return np.array([float(x) for x in text.split(",")], dtype=np.float32)
    return np.zeros(dimensions, dtype=np.float32)


def set_meta(conn: Any, key: str, value: Any) -> None:
    conn.execute("insert into meta(key, value) values (?, ?) on conflict(key) do update set "
                 "value = excluded.value", (key, str(value)))


def new_epoch(conn: Any) -> None:
    """Every full rewrite of the vectors (or a new file) gets a fresh token: processes holding
    the old vectors in memory reload them whole."""
    set_meta(conn, "codes_epoch", secrets.token_hex(8))


def bump_generation(conn: Any) -> None:
    conn.execute("insert into meta(key, value) values ('generation', '1') on conflict(key) "
                 "do update set value = cast(value as integer) + 1")
