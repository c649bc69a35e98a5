"""The stand-alone verifier (deploy/verify_proof.py): RFC 8032 Ed25519 vectors, and its Merkle
checks agree with projections.merkle on every proof and reject altered ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from projections import merkle

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "verify_proof.py"
spec = importlib.util.spec_from_file_location("verify_proof", SCRIPT)
assert spec and spec.loader
verifier = importlib.util.module_from_spec(spec)
spec.loader.exec_module(verifier)

# RFC 8032 §7.1, tests 1-3: (public key, message, signature).
VECTORS = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


@pytest.mark.parametrize("public, message, signature", VECTORS)
def test_rfc8032_vectors(public, message, signature):
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert verifier.ed25519_verify(pk, msg, sig)
    assert not verifier.ed25519_verify(pk, msg + b"x", sig)
    bad = bytearray(sig)
    bad[5] ^= 1
    assert not verifier.ed25519_verify(pk, msg, bytes(bad))
    assert not verifier.ed25519_verify(pk[:31], msg, sig)


def test_signatures_of_the_portal_library_verify():
    key = Ed25519PrivateKey.generate()
    pk = key.public_key().public_bytes(serialization.Encoding.Raw,
                                       serialization.PublicFormat.Raw)
    note = b"http://127.0.0.1:8000/transparency\n12\nAAAA\n2026-11-28T00:00:00+00:00\n"
    assert verifier.ed25519_verify(pk, note, key.sign(note))
    other = Ed25519PrivateKey.generate()
    assert not verifier.ed25519_verify(pk, note, other.sign(note))


@pytest.mark.parametrize("n", [1, 2, 3, 6, 8, 13])
def test_verifier_merkle_agrees_with_the_library(n):
    leaves = [merkle.leaf_hash(f"record {i}".encode()) for i in range(n)]
    root = merkle.root_of(leaves)
    for i in range(n):
        path = merkle.inclusion_proof(i, leaves)
        assert verifier.verify_inclusion(leaves[i], i, n, path, root)
        assert not verifier.verify_inclusion(merkle.leaf_hash(b"x"), i, n, path, root)
    for m in range(1, n + 1):
        proof = merkle.consistency_proof(m, leaves)
        assert verifier.verify_consistency(m, n, merkle.root_of(leaves[:m]), root, proof)
        if m < n:
            assert not verifier.verify_consistency(m, n, merkle.leaf_hash(b"x"), root, proof)
