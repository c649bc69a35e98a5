"""The Merkle tree against RFC 9162's definitions: roots, inclusion and consistency proofs."""

from __future__ import annotations

import hashlib

import pytest

from projections import merkle
from projections.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)


def mth(data: list[bytes]) -> bytes:
    """The recursive definition of RFC 9162 §2.1.1, as written there."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def records(n: int) -> list[bytes]:
    return [f'{{"position":{i},"kind":"received"}}'.encode() for i in range(1, n + 1)]


def test_hashes_are_domain_separated():
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    # A node can not pose as a leaf of the concatenated data.
    assert root_of([a, b]) != leaf_hash(a + b)
    assert root_of([]) == EMPTY_ROOT


@pytest.mark.parametrize("n", [*range(1, 34), 64, 65, 100])
def test_root_matches_the_recursive_definition(n):
    data = records(n)
    assert root_of([leaf_hash(d) for d in data]) == mth(data)


def test_known_vector_from_the_certificate_transparency_test_suite():
    # RFC 6962 test leaves (certificate-transparency-go merkletree tests): 8 leaves, known root.
    leaves = [bytes.fromhex(h) for h in
              ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
               "606162636465666768696a6b6c6d6e6f"]]
    root = root_of([leaf_hash(x) for x in leaves])
    assert root.hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 16, 17, 31])
def test_every_inclusion_proof_verifies_and_a_changed_one_fails(n):
    hashes = [leaf_hash(d) for d in records(n)]
    root = root_of(hashes)
    for i in range(n):
        proof = inclusion_proof(i, hashes)
        assert verify_inclusion(hashes[i], i, n, proof, root)
        assert not verify_inclusion(leaf_hash(b"forged"), i, n, proof, root)
        if n > 1:
            assert not verify_inclusion(hashes[i], (i + 1) % n, n, proof, root)
            bad = [*proof]
            bad[0] = hashlib.sha256(bad[0]).digest()
            assert not verify_inclusion(hashes[i], i, n, bad, root)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 8, 12, 17, 33])
def test_every_consistency_proof_verifies_and_a_rewritten_history_fails(n):
    hashes = [leaf_hash(d) for d in records(n)]
    for m in range(0, n + 1):
        proof = consistency_proof(m, hashes)
        old = root_of(hashes[:m])
        assert verify_consistency(m, n, old, root_of(hashes), proof), (m, n)
        if 0 < m < n:
            rewritten = [*hashes[: m - 1], leaf_hash(b"rewritten"), *hashes[m:]]
            assert not verify_consistency(m, n, old, root_of(rewritten), proof)
            assert not verify_consistency(m, n, root_of(rewritten[:m]), root_of(hashes), proof)
            if proof:
                assert not verify_consistency(m, n, old, root_of(hashes), proof[:-1])


def test_out_of_range_requests_are_refused():
    hashes = [leaf_hash(d) for d in records(4)]
    with pytest.raises(ProofError):
        inclusion_proof(4, hashes)
    with pytest.raises(ProofError):
        consistency_proof(5, hashes)
    assert not verify_inclusion(hashes[0], 5, 4, [], root_of(hashes))
    assert merkle.verify_consistency(3, 2, b"", b"", []) is False


def test_the_remembering_tree_gives_the_same_roots_and_proofs_as_it_grows(monkeypatch):
    """`Tree` (subtree hashes remembered, leaves packed in `LeafHashes`) answers as the plain
    functions over the first `size` leaves, for sizes across several remembered levels, while
    leaves are appended after some answers were remembered."""
    import random

    monkeypatch.setattr(merkle, "MEMO_LEAVES", 4)
    rng = random.Random(7)
    packed = merkle.LeafHashes()
    tree = merkle.Tree(packed)
    plain: list[bytes] = []
    assert tree.root() == EMPTY_ROOT and tree.consistency_proof(0) == []
    for n in range(1, 140):
        h = leaf_hash(n.to_bytes(4, "big"))
        packed.append(h)
        plain.append(h)
        assert len(packed) == n and packed[-1] == h and packed[n - 1:] == [h]
        assert tree.root() == root_of(plain)
        for size in {n, rng.randint(1, n), 1}:
            assert tree.root(size) == root_of(plain[:size])
            for index in {0, size - 1, rng.randrange(size)}:
                assert tree.inclusion_proof(index, size) == inclusion_proof(index, plain[:size])
            for first in {0, 1, size, rng.randint(0, size)}:
                assert tree.consistency_proof(first, size) == consistency_proof(first,
                                                                              plain[:size])
    assert len(tree._memo) > 30  # the remembered subtrees were used
    with pytest.raises(ProofError):
        tree.inclusion_proof(5, 5)
    with pytest.raises(ProofError):
        tree.consistency_proof(3, len(plain) + 1)
    with pytest.raises(IndexError):
        packed[len(plain)]


def test_subtrees_kept_elsewhere_are_taken_as_remembered(monkeypatch):
    """A tree seeded with perfect subtree hashes computed earlier (the transparency log keeps
    them with its chunks of leaves) gives the same answers without rehashing their leaves;
    packed hashes append and slice as the single ones do; a subtree that is not one of the
    tree's splits is refused."""
    monkeypatch.setattr(merkle, "MEMO_LEAVES", 4)
    plain = [leaf_hash(r) for r in records(45)]
    source = merkle.LeafHashes()
    for h in plain:
        source.append(h)
    kept = [(lo, merkle.Tree(source).subtree(lo, lo + 8)) for lo in range(0, 40, 8)]
    assert kept[1][1] == root_of(plain[8:16])
    packed = merkle.LeafHashes()
    packed.extend_packed(source.packed(0, 40))
    packed.extend_packed(source.packed(40, 45))
    assert list(packed) == plain and source.packed(3, 5) == plain[3] + plain[4]
    seeded = merkle.Tree(packed)
    for lo, value in kept:
        seeded.remember(lo, 8, value)
    assert seeded.root() == root_of(plain)
    assert seeded.inclusion_proof(44) == inclusion_proof(44, plain)
    assert seeded.consistency_proof(24, 45) == consistency_proof(24, plain)
    wrong = merkle.Tree(packed)
    wrong.remember(8, 8, bytes(32))  # the remembered value is what the tree uses
    assert wrong.root() != root_of(plain) and wrong.root(8) == root_of(plain[:8])
    for lo, n in ((4, 8), (0, 6), (3, 2)):
        with pytest.raises(ProofError):
            seeded.remember(lo, n, bytes(32))
    with pytest.raises(ProofError):
        seeded.subtree(40, 48)  # past the last leaf
    with pytest.raises(ValueError):
        packed.extend_packed(b"short")
    # A buffer handed over is taken without a copy when nothing is held yet; else appended.
    handed = bytearray(source.packed(0, 45))
    owned = merkle.LeafHashes()
    owned.extend_owned(handed)
    assert owned._buf is handed and list(owned) == plain
    owned.extend_owned(bytearray(source.packed(0, 2)))
    assert list(owned) == [*plain, *plain[:2]]
    with pytest.raises(ValueError):
        merkle.LeafHashes().extend_owned(bytearray(b"short"))


def test_packed_leaf_hashes_slice_as_a_list_does():
    """Slices of the packed hashes (the tree hashes a subtree from one) are those of the list
    of single hashes, whatever their bounds and step."""
    plain = [leaf_hash(r) for r in records(13)]
    hashes = merkle.LeafHashes()
    for h in plain:
        hashes.append(h)
    for part in (slice(0, 13), slice(3, 8), slice(5, 5), slice(8, 3), slice(-4, None),
                 slice(None, -20), slice(2, 100), slice(1, 12, 3), slice(None, None, -2)):
        assert hashes[part] == plain[part], part
