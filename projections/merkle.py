"""A pure RFC 6962 / RFC 9162 Merkle tree: leaf and node hashes, inclusion and consistency proofs.

Hashes are domain-separated: a leaf is SHA-256(0x00 || data), an interior node is
SHA-256(0x01 || left || right), so a leaf can never be passed off as a node. The split of a
range of n leaves is at the largest power of two smaller than n (RFC 9162 §2.1.1). Nothing here
knows about SQL or the feed: functions take lists of leaf hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof was asked for sizes or indexes the tree does not have."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_of(leaves: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of a list of leaf hashes (MTH of RFC 9162 §2.1.1), iteratively."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # Bottom-up pairing gives the same tree as the recursive split: a lone right-most node is
    # promoted unchanged to the next level.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Audit path of leaf `index` in the tree of all `leaves` (RFC 9162 §2.1.3.1)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ProofError(f"leaf {index} is not in a tree of size {n}")
    return _path(index, leaves)


def _path(m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, d[:k]), root_of(d[k:])]
    return [*_path(m - k, d[k:]), root_of(d[:k])]


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Proof that the tree of the first `first` leaves is a prefix of the tree of all leaves."""
    n = len(leaves)
    if not 0 <= first <= n:
        raise ProofError(f"size {first} is larger than the tree ({n})")
    if first == 0 or first == n:
        return []
    return _subproof(first, leaves, True)


def _subproof(m: int, d: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if whole else [root_of(d)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, d[:k], whole), root_of(d[k:])]
    return [*_subproof(m - k, d[k:], False), root_of(d[:k])]


class LeafHashes(Sequence[bytes]):
    """Leaf hashes packed in one buffer, 32 bytes each: a province's five million are 160 MB
    here, against about 330 MB as a list of bytes objects."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def append(self, digest: bytes) -> None:
        self._buf += digest

    def extend_packed(self, packed: bytes) -> None:
        """Append hashes given packed, as `packed` returns them."""
        if len(packed) & 31:
            raise ValueError("packed leaf hashes are 32 bytes each")
        self._buf += packed

    def extend_owned(self, packed: bytearray) -> None:
        """`extend_packed` with a buffer the caller hands over and no longer uses: taken as
        it is, without a copy, when nothing is held yet (a province's 160 MB)."""
        if self._buf or len(packed) & 31:
            self.extend_packed(packed)
        else:
            self._buf = packed

    def packed(self, lo: int, hi: int) -> bytes:
        """Hashes lo..hi-1, packed."""
        return bytes(self._buf[lo << 5:hi << 5])

    def __len__(self) -> int:
        return len(self._buf) >> 5

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return [self[j] for j in range(start, stop, step)]
            part = bytes(self._buf[start << 5:stop << 5])
            return [part[j:j + 32] for j in range(0, len(part), 32)]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        return bytes(self._buf[i << 5:(i + 1) << 5])


# Perfect subtrees of at least this many leaves have their hash remembered (`Tree`).
MEMO_LEAVES = 256


class Tree:
    """The tree of an append-only list of leaf hashes, with the hash of every perfect subtree
    of `MEMO_LEAVES` leaves or more remembered once computed: appending never changes them,
    so a root, an inclusion or a consistency proof of any size costs a few thousand hashes
    after the first, not one per leaf (a province's log: 2.5 s each before). The answers are
    those of `root_of`, `inclusion_proof` and `consistency_proof` over the first `size`
    leaves (tests/unit/test_merkle.py checks them against each other)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = leaves
        self._memo: dict[tuple[int, int], bytes] = {}

    def _hash(self, lo: int, hi: int) -> bytes:
        """MTH of leaves[lo:hi] (hi > lo)."""
        n = hi - lo
        if n == 1:
            return self.leaves[lo]
        perfect = n & (n - 1) == 0
        if perfect and n >= MEMO_LEAVES:
            found = self._memo.get((lo, n))
            if found is not None:
                return found
        if n < MEMO_LEAVES:
            value = root_of(self.leaves[lo:hi])
        else:
            k = _split(n)
            value = node_hash(self._hash(lo, lo + k), self._hash(lo + k, hi))
        if perfect and n >= MEMO_LEAVES:
            self._memo[(lo, n)] = value
        return value

    def subtree(self, lo: int, hi: int) -> bytes:
        """The hash of the perfect subtree of leaves lo..hi-1 (remembered from then on)."""
        n = hi - lo
        if n < 1 or n & (n - 1) or lo % n or hi > len(self.leaves):
            raise ProofError(f"leaves {lo}..{hi - 1} are not a perfect subtree of the tree")
        return self._hash(lo, hi)

    def remember(self, lo: int, n: int, value: bytes) -> None:
        """Take `value` as the hash of the perfect subtree of `n` leaves from `lo` (one
        computed earlier, e.g. kept in a database with its leaves): `lo` must be a multiple of
        `n`, as every perfect subtree of the tree's splits is."""
        if n & (n - 1) or lo % n:
            raise ProofError(f"no perfect subtree of {n} leaves starts at leaf {lo}")
        if n >= MEMO_LEAVES:
            self._memo[(lo, n)] = value

    def _size(self, size: int | None) -> int:
        n = len(self.leaves) if size is None else size
        if not 0 <= n <= len(self.leaves):
            raise ProofError(f"size {n} is larger than the tree ({len(self.leaves)})")
        return n

    def root(self, size: int | None = None) -> bytes:
        n = self._size(size)
        return self._hash(0, n) if n else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        n = self._size(size)
        if not 0 <= index < n:
            raise ProofError(f"leaf {index} is not in a tree of size {n}")
        path: list[bytes] = []
        lo, hi, m = 0, n, index
        while hi - lo > 1:  # the recursion of `_path`, from the top; its path is bottom-up
            k = _split(hi - lo)
            if m < k:
                path.append(self._hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._hash(lo, lo + k))
                lo, m = lo + k, m - k
        return path[::-1]

    def consistency_proof(self, first: int, size: int | None = None) -> list[bytes]:
        n = self._size(size)
        if not 0 <= first <= n:
            raise ProofError(f"size {first} is larger than the tree ({n})")
        if first == 0 or first == n:
            return []
        path: list[bytes] = []
        lo, hi, m, whole = 0, n, first, True
        while m != hi - lo:  # the recursion of `_subproof`, from the top
            k = _split(hi - lo)
            if m <= k:
                path.append(self._hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._hash(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        if not whole:
            path.append(self._hash(lo, hi))
        return path[::-1]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
                     ) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` put leaf hash `leaf` at `index` of a tree with `root`?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while (fn & 1) == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (first, first_root) a prefix of (second, second_root)?"""
    if first < 0 or second < first:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree's root is a node of the path
        path = [first_root, *path]
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while (fn & 1) == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
