"""Vector search: binary-quantised pre-filtering, then exact re-scoring of the candidates.

Storage (all in the one SQLite file, written in the same transaction as the item):

* ``item_vectors(rowid, embedding)``: the exact float32 vector, read back only for candidates;
* ``memory_vec``: a sqlite-vec ``vec0`` table of 1-bit codes (sign of the vector minus a
  stored centre), the quantised index SQLite itself can search (hamming KNN);
* ``item_codes(rowid, code)``: the same codes in a narrow plain table, fast to load whole.

A query takes the C nearest codes by hamming distance (C grows with the store: ``max(25k,
N/100)``), reads their exact vectors and keeps the k best by cosine. Small stores skip the
pre-filter and score every vector exactly. The first pre-filtered query of a process asks
sqlite-vec (no load cost); from the second on, the process keeps the codes in memory as a packed
matrix and scans them with numpy (a few ms per 100k), reloaded when another write moves the
database's generation on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Below this many vectors every query scores all of them exactly.
EXACT_LIMIT = 2_000
#: sqlite-vec answers at most this many neighbours per KNN query.
VEC0_MAX_K = 4096


def candidates_for(n: int, k: int) -> int:
    return max(k * 25, n // 100)


class VectorIndex:
    """The vector side of one database; see the module docstring."""

    def __init__(self, db: Any, dimensions: int) -> None:
        self.db = db
        self.dimensions = dimensions
        self.code_bytes = (dimensions + 7) // 8
        self._centre: np.ndarray | None = None
        self._centre_generation: str | None = None
        # The in-memory code matrix (words x N, contiguous per word) and its rowids.
        self._codes: np.ndarray | None = None
        self._rowids: np.ndarray | None = None
        self._loaded_generation: str | None = None
        self._cold_queries = 0
        self._exact: tuple[np.ndarray, np.ndarray, str | None] | None = None
        self.last_path = ""

    # ----------------------------------------------------------------- schema

    @staticmethod
    def create_tables(conn: Any, dimensions: int) -> None:
        conn.execute("create table if not exists item_vectors "
                     "(rowid integer primary key, embedding blob not null)")
        conn.execute("create table if not exists item_codes "
                     "(rowid integer primary key, code blob not null)")
        conn.execute(f"create virtual table if not exists memory_vec using vec0(code bit[{dimensions}])")

    @staticmethod
    def drop_tables(conn: Any) -> None:
        for table in ("item_vectors", "item_codes", "memory_vec"):
            conn.execute(f"drop table if exists {table}")

    # ----------------------------------------------------------------- writing

    def centre(self) -> np.ndarray:
        gen = self.db.meta("generation", "0")
        if self._centre is None or gen != self._centre_generation:
            row = self.db.conn.execute("select value from meta where key = 'centre'").fetchone()
            if row and row[0]:
                self._centre = np.array([float(x) for x in row[0].split(",")], dtype=np.float32)
            else:
                self._centre = np.zeros(self.dimensions, dtype=np.float32)
            self._centre_generation = gen
        return self._centre

    def encode(self, vectors: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
        """1-bit codes, one row of packed bytes per vector."""
        c = self.centre() if centre is None else centre
        return np.packbits(vectors - c > 0, axis=-1)

    def add(self, conn: Any, rowids: list[int], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        codes = self.encode(vectors)
        conn.executemany("insert into item_vectors(rowid, embedding) values (?, ?)",
                         [(r, v.tobytes()) for r, v in zip(rowids, vectors)])
        conn.executemany("insert into item_codes(rowid, code) values (?, ?)",
                         [(r, c.tobytes()) for r, c in zip(rowids, codes)])
        conn.executemany("insert into memory_vec(rowid, code) values (?, vec_bit(?))",
                         [(r, c.tobytes()) for r, c in zip(rowids, codes)])
        conn.execute("insert into meta(key, value) values ('vector_count', ?) on conflict(key) do "
                     "update set value = cast(value as integer) + ?", (len(rowids), len(rowids)))

    def remove(self, conn: Any, rowid: int) -> None:
        cur = conn.execute("delete from item_vectors where rowid = ?", (rowid,))
        if cur.rowcount:
            conn.execute("delete from item_codes where rowid = ?", (rowid,))
            conn.execute("delete from memory_vec where rowid = ?", (rowid,))
            conn.execute("update meta set value = cast(value as integer) - 1 "
                         "where key = 'vector_count'")
            self.note_removal(conn)

    @staticmethod
    def note_removal(conn: Any) -> None:
        conn.execute("insert into meta(key, value) values ('removals', '1') on conflict(key) "
                     "do update set value = cast(value as integer) + 1")

    def recentre(self, conn: Any) -> None:
        """Recompute the centre from the stored vectors and rewrite every code.

        Binarising around the data's mean rather than zero keeps the codes informative for
        embedders whose vectors share a common direction (sentence models do).
        """
        total = np.zeros(self.dimensions, dtype=np.float64)
        n = 0
        for (blob,) in conn.execute("select embedding from item_vectors"):
            total += np.frombuffer(blob, dtype=np.float32)
            n += 1
        centre = (total / max(n, 1)).astype(np.float32)
        conn.execute("insert into meta(key, value) values ('centre', ?) on conflict(key) do "
                     "update set value = excluded.value", (",".join(f"{x:.6g}" for x in centre),))
        conn.execute("insert into meta(key, value) values ('centre_n', ?) on conflict(key) do "
                     "update set value = excluded.value", (n,))
        conn.execute("delete from item_codes")
        conn.execute("delete from memory_vec")
        batch: list[tuple[int, bytes]] = []

        def flush() -> None:
            rowids = [r for r, _ in batch]
            vecs = np.frombuffer(b"".join(b for _, b in batch), dtype=np.float32).reshape(
                len(batch), self.dimensions)
            codes = self.encode(vecs, centre)
            pairs = [(r, c.tobytes()) for r, c in zip(rowids, codes)]
            conn.executemany("insert into item_codes(rowid, code) values (?, ?)", pairs)
            conn.executemany("insert into memory_vec(rowid, code) values (?, vec_bit(?))", pairs)
            batch.clear()

        for row in conn.execute("select rowid, embedding from item_vectors").fetchall():
            batch.append(row)
            if len(batch) >= 5000:
                flush()
        if batch:
            flush()
        self._centre = centre
        self._codes = None

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
        if n <= EXACT_LIMIT or wanted >= n:
            self.last_path = "exact"
            ids, mat = self._exact_matrix()
            return self._best(ids, mat, q, k)
        else:
            cand = self._prefilter(q, wanted, n)
            marks = ",".join(str(int(r)) for r in cand)
            rows = self.db.query(f"select rowid, embedding from item_vectors where rowid in ({marks})")
        return self._best(*self._matrix(rows), q, k)

    def _matrix(self, rows: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(
            len(rows), self.dimensions)
        return ids, mat

    @staticmethod
    def _best(ids: np.ndarray, mat: np.ndarray, q: np.ndarray, k: int) -> list[tuple[int, float]]:
        if len(ids) == 0:
            return []
        scores = mat @ q
        top = min(k, len(ids))
        best = np.argpartition(-scores, top - 1)[:top] if top < len(ids) else np.arange(len(ids))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(ids[i]), float(scores[i])) for i in best]

    def _exact_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """All vectors of a small store, cached per process and topped up incrementally.

        Rowids only grow, so new vectors are those past the last one read; a removal anywhere
        (counted in meta) forces a full reload.
        """
        removals = self.db.meta("removals", "0")
        cache = self._exact
        if cache is None or cache[2] != removals:
            ids, mat = self._matrix(self.db.query("select rowid, embedding from item_vectors "
                                                  "order by rowid"))
        else:
            ids, mat = cache[0], cache[1]
            last = int(ids[-1]) if len(ids) else 0
            rows = self.db.query("select rowid, embedding from item_vectors where rowid > ? "
                                 "order by rowid", (last,))
            if rows:
                new_ids, new_mat = self._matrix(rows)
                ids, mat = np.concatenate([ids, new_ids]), np.concatenate([mat, new_mat])
        self._exact = (ids, mat, removals)
        return ids, mat

    def _prefilter(self, q: np.ndarray, wanted: int, n: int) -> np.ndarray:
        generation = self.db.meta("generation", "0")
        code = self.encode(q[None, :])[0]
        if self._codes is not None and self._loaded_generation == generation:
            self.last_path = "quantised-numpy"
            return self._scan_memory(code, wanted)
        self._codes = None
        self._cold_queries += 1
        if self._cold_queries >= 2:
            # This process searches repeatedly: worth holding the codes in memory.
            self._load_codes(generation)
            self.last_path = "quantised-numpy"
            return self._scan_memory(code, wanted)
        self.last_path = "quantised-sqlite-vec"
        rows = self.db.query(
            "select rowid from memory_vec where code match vec_bit(?) and k = ?",
            (code.tobytes(), min(wanted, VEC0_MAX_K)),
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _load_codes(self, generation: str | None) -> None:
        rows = self.db.query("select rowid, code from item_codes")
        words = self.code_bytes // 8 if self.code_bytes % 8 == 0 else None
        self._rowids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        packed = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(
            len(rows), self.code_bytes)
        if words:
            # Word-major layout: each 64-bit column is contiguous, which numpy scans fastest.
            self._codes = np.ascontiguousarray(packed.view(np.uint64).T)
        else:
            self._codes = np.ascontiguousarray(packed.T)
        self._loaded_generation = generation

    def _scan_memory(self, code: np.ndarray, wanted: int) -> np.ndarray:
        codes = self._codes
        assert codes is not None and self._rowids is not None
        q = code.view(np.uint64) if codes.dtype == np.uint64 else code
        dist = np.bitwise_count(codes[0] ^ q[0]).astype(np.uint16)
        for j in range(1, codes.shape[0]):
            dist += np.bitwise_count(codes[j] ^ q[j])
        if wanted >= len(dist):
            return self._rowids
        return self._rowids[np.argpartition(dist, wanted)[:wanted]]
