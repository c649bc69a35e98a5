"""Helper processes of the transparency log's first hashing of a rebuilt feed
(`projections.transparency.TransparencyLog._hash_in_processes`), started as
``python -m projections.leafhash rows|roots ...`` (plain processes: the caller may have threads,
and its main module need not be importable again, as multiprocessing would want).

- ``rows DB OUT SQL AFTER STOP LAST HI LO GENERATION PAGE``: hash the feed's records of a range
  of rowids (SQL reads `PAGE` rows at a time, with the tables' token), each leaf hash written
  at its position's place (position - LO, 32 bytes each) in the file OUT; prints the rows
  hashed and 1, or 0 when a read met other tables (a token other than GENERATION; "-" is none).
- ``roots OUT BASE SIZE K...``: print "K ROOT" (hex) for each complete chunk K of SIZE leaves of
  OUT, whose first hash is leaf BASE of the tree.
"""

from __future__ import annotations

import mmap
import sqlite3
import sys

from projections import merkle


def hash_rows(db_path: str, out: str, sql: str, params: tuple[int, int, int, int], lo: int,
              generation: str | None, page: int) -> tuple[int, bool]:
    leaf = merkle.leaf_hash
    after, stop, last, hi = params
    seen = 0
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        with open(out, "r+b") as f, mmap.mmap(f.fileno(), 0) as hashes:
            while True:
                rows = conn.execute(sql, (after, stop, last, hi, page)).fetchall()
                if not rows:
                    return seen, True
                if rows[0][3] != generation:
                    return seen, False
                for _, position, record, _ in rows:
                    i = (position - lo) << 5
                    hashes[i:i + 32] = leaf(record)
                seen += len(rows)
                after = rows[-1][0]
    finally:
        conn.close()


def chunk_roots(out: str, chunks: list[int], base: int, size: int) -> list[tuple[int, bytes]]:
    roots = []
    with open(out, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for k in chunks:
            at = (k * size - base) << 5
            part = data[at:at + (size << 5)]
            roots.append((k, merkle.root_of([part[j:j + 32]
                                             for j in range(0, len(part), 32)])))
    return roots


def main(argv: list[str]) -> int:
    if argv[:1] == ["rows"] and len(argv) == 11:
        db_path, out, sql = argv[1:4]
        after, stop, last, hi, lo = (int(v) for v in argv[4:9])
        generation = None if argv[9] == "-" else argv[9]
        seen, ok = hash_rows(db_path, out, sql, (after, stop, last, hi), lo, generation,
                             int(argv[10]))
        print(seen, int(ok))
        return 0
    if argv[:1] == ["roots"] and len(argv) >= 4:
        for k, root in chunk_roots(argv[1], [int(k) for k in argv[4:]], int(argv[2]),
                                   int(argv[3])):
            print(k, root.hex())
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
