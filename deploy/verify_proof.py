#!/usr/bin/env python3
"""Stand-alone verifier of the portal's transparency log, using only the Python standard library.

Anyone can check, without trusting the portal's servers or code, that
  1. a checkpoint (tree size, root hash, time) was signed by the portal's Ed25519 key,
  2. a public-feed record is included in the tree of that checkpoint (inclusion proof),
  3. a later checkpoint extends an earlier one without rewriting it (consistency proof).

Inputs are JSON files or http(s) URLs, as the portal serves them:
    /transparency/key                                       the public key
    /transparency/checkpoints/latest, /transparency/checkpoints/{size}
    /transparency/proofs/inclusion?position=P&size=N
    /transparency/proofs/consistency?first=M&second=N

Examples:
    python3 verify_proof.py --key key.json inclusion --checkpoint cp.json proof.json
    python3 verify_proof.py --key key.json consistency old.json new.json proof.json
Exit status 0 = verified, 1 = verification failed, 2 = bad input.

The Merkle tree follows RFC 9162 §2.1 (leaf = SHA-256(0x00 || record), node =
SHA-256(0x01 || left || right)); Ed25519 verification follows RFC 8032 §5.1.7 and §6.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import urllib.request
from typing import Any

# --- Ed25519 verification (RFC 8032, the reference code of §6, verify only) -----------------
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _inv(x: int) -> int:
    return pow(x, _P - 2, _P)


def _add(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    aa = (a[1] - a[0]) * (b[1] - b[0]) % _P
    bb = (a[1] + a[0]) * (b[1] + b[0]) % _P
    cc = 2 * a[3] * b[3] * _D % _P
    dd = 2 * a[2] * b[2] % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, pt: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, pt)
        pt = _add(pt, pt)
        s >>= 1
    return q


def _equal(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * _inv(_D * y * y + 1)
    if x2 % _P == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


_GY = 4 * _inv(5) % _P
_GX = _recover_x(_GY, 0) or 0
_G = (_GX, _GY, 1, _GX * _GY % _P)


def _decompress(s: bytes) -> tuple[int, int, int, int] | None:
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decompress(public_key)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(),
                       "little") % _L
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


# --- Merkle tree (RFC 9162 §2.1) ------------------------------------------------------------
def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while (fn & 1) == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: list[bytes]) -> bool:
    if first < 0 or second < first:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof
    path = [first_root, *proof] if first & (first - 1) == 0 else list(proof)
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
            fr, sr = _node(c, fr), _node(c, sr)
            if not fn & 1:
                while (fn & 1) == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# --- checkpoints ----------------------------------------------------------------------------
class Invalid(Exception):
    """The input is readable but does not verify."""


def b64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def public_key_of(doc: dict[str, Any]) -> bytes:
    key = b64(doc["public_key"])
    if len(key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return key


def verify_checkpoint(checkpoint: dict[str, Any], public_key: bytes) -> tuple[int, bytes]:
    """Check the signature over the checkpoint note and that the note says what the JSON says."""
    note = checkpoint["note"].encode()
    if not ed25519_verify(public_key, note, b64(checkpoint["signature"])):
        raise Invalid("chữ ký của điểm kiểm tra không hợp lệ (signature does not verify)")
    lines = checkpoint["note"].split("\n")
    if len(lines) < 4 or lines[1] != str(checkpoint["size"]) or lines[2] != checkpoint["root"]:
        raise Invalid("nội dung đã ký không khớp kích thước/gốc (signed note does not match)")
    return int(checkpoint["size"]), b64(checkpoint["root"])


def check_inclusion(proof: dict[str, Any], checkpoint: dict[str, Any], public_key: bytes) -> str:
    size, root = verify_checkpoint(checkpoint, public_key)
    if int(proof["tree_size"]) != size:
        raise Invalid(f"proof is for a tree of size {proof['tree_size']}, checkpoint has {size}")
    if "record" in proof:
        leaf = leaf_hash(proof["record"].encode("utf-8"))
        if "leaf_hash" in proof and b64(proof["leaf_hash"]) != leaf:
            raise Invalid("leaf_hash is not the hash of the record")
    else:
        leaf = b64(proof["leaf_hash"])
    path = [b64(x) for x in proof["audit_path"]]
    if not verify_inclusion(leaf, int(proof["leaf_index"]), size, path, root):
        raise Invalid("bản ghi không nằm trong cây của điểm kiểm tra (inclusion proof fails)")
    return (f"OK: record at leaf {proof['leaf_index']} is included in the signed tree of size"
            f" {size}")


def check_consistency(proof: dict[str, Any], old: dict[str, Any], new: dict[str, Any],
                      public_key: bytes) -> str:
    m, m_root = verify_checkpoint(old, public_key)
    n, n_root = verify_checkpoint(new, public_key)
    if (int(proof["first"]), int(proof["second"])) != (m, n):
        raise Invalid("proof sizes do not match the checkpoints")
    if not verify_consistency(m, n, m_root, n_root, [b64(x) for x in proof["proof"]]):
        raise Invalid("cây mới không nối tiếp cây cũ (consistency proof fails: history rewritten)")
    return f"OK: the signed tree of size {n} extends the signed tree of size {m} unchanged"


def load(source: str) -> dict[str, Any]:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as r:  # noqa: S310 (http(s) only)
            return json.loads(r.read().decode("utf-8"))
    with open(source, encoding="utf-8") as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--key", required=True, help="public key JSON (file or URL)")
    sub = p.add_subparsers(dest="kind", required=True)
    i = sub.add_parser("inclusion", help="a feed record is in a signed checkpoint")
    i.add_argument("--checkpoint", required=True)
    i.add_argument("proof")
    c = sub.add_parser("consistency", help="a later checkpoint extends an earlier one")
    c.add_argument("old")
    c.add_argument("new")
    c.add_argument("proof")
    sub.add_parser("checkpoint", help="only check a checkpoint's signature").add_argument("cp")
    args = p.parse_args(argv)
    try:
        key = public_key_of(load(args.key))
        if args.kind == "inclusion":
            print(check_inclusion(load(args.proof), load(args.checkpoint), key))
        elif args.kind == "consistency":
            print(check_consistency(load(args.proof), load(args.old), load(args.new), key))
        else:
            size, root = verify_checkpoint(load(args.cp), key)
            print(f"OK: checkpoint of size {size} with root {root.hex()} is signed by the key")
    except Invalid as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"bad input: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
