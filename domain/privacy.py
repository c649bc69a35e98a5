"""Applicant personal data: masking for the public, sealing with a per-applicant key (crypto-shredding).

The event log stores only a sealed blob and a key id; the key lives outside the log in an
`ApplicantKeys` store. Erasing the key makes the blob unreadable while every event, public view
and count stays intact.
"""

from __future__ import annotations

import json
import unicodedata
from base64 import b64decode, b64encode
from dataclasses import asdict, dataclass
from typing import Protocol

from eventsourcing.cryptography import AESCipher
from eventsourcing.utils import Environment

from domain.errors import InvalidCommand


def nfc(text: str) -> str:
    """Unicode NFC with surrounding whitespace removed and inner runs collapsed; characters that
    print nothing (NUL and other controls, bidirectional overrides that would reorder a public
    text, lone surrogates) are dropped."""
    text = unicodedata.normalize("NFC", text)
    return " ".join("".join(ch for ch in text if ch.isprintable() or ch.isspace()).split())


def mask_name(full_name: str) -> str:
    """Public form of a Vietnamese name: family name, then initials ("Nguyễn Văn An" -> "Nguyễn V. A.")."""
    parts = nfc(full_name).split(" ")
    if not parts or not parts[0]:
        return ""
    if len(parts) == 1:
        return parts[0][0].upper() + "."
    family = parts[0][:1].upper() + parts[0][1:]
    return family + " " + " ".join(p[0].upper() + "." for p in parts[1:])


@dataclass(frozen=True)
class Applicant:
    """Personal data of the person or organisation filing a dossier; never public."""

    name: str
    id_number: str = ""
    address: str = ""
    phone: str = ""
    email: str = ""
    kind: int = 1  # LoaiDoiTuong: 1 citizen, 2 business, 3 state agency, 4 other

    def normalised(self) -> Applicant:
        name = nfc(self.name)
        if not name:
            raise InvalidCommand("applicant name is required", "Cần nhập họ tên người nộp hồ sơ.")
        if len(name) > 200:
            raise InvalidCommand("applicant name is too long", "Họ tên quá dài (tối đa 200 ký tự).")
        if self.kind not in (1, 2, 3, 4):
            raise InvalidCommand("applicant kind must be 1-4", "Loại đối tượng không hợp lệ.")
        # The name is published masked (family name, then initials): an ID number, a phone
        # number or an e-mail address typed into it would be published with it.
        if "@" in name or (self.kind == 1 and any(ch.isdigit() for ch in name)):
            raise InvalidCommand(
                "a citizen's name holds no digits and no e-mail address",
                "Họ tên người nộp không được chứa chữ số hay địa chỉ thư điện tử: số giấy tờ,"
                " số điện thoại, thư điện tử ghi vào ô riêng.")
        return Applicant(
            name=name,
            id_number=nfc(self.id_number),
            address=nfc(self.address),
            phone=nfc(self.phone),
            email=nfc(self.email),
            kind=self.kind,
        )


class ApplicantKeys(Protocol):
    """Per-applicant keys kept outside the event log."""

    def create(self, key_id: str) -> str: ...  # returns a base64 AES key, stored
    def get(self, key_id: str) -> str | None: ...  # None once erased
    def erase(self, key_id: str) -> None: ...


class MemoryApplicantKeys:
    """A key store in memory, for tests and the benchmark."""

    def __init__(self) -> None:
        self._keys: dict[str, str | None] = {}

    def create(self, key_id: str) -> str:
        key = self._keys.get(key_id)
        if key is None:
            key = AESCipher.create_key(32)
            self._keys[key_id] = key
        return key

    def get(self, key_id: str) -> str | None:
        return self._keys.get(key_id)

    def erase(self, key_id: str) -> None:
        self._keys[key_id] = None


def _cipher(key: str) -> AESCipher:
    return AESCipher(Environment(env={"CIPHER_KEY": key}))


def seal(applicant: Applicant, key: str) -> str:
    plaintext = json.dumps(asdict(applicant), ensure_ascii=False).encode()
    return b64encode(_cipher(key).encrypt(plaintext)).decode()


def unseal(sealed: str, key: str | None) -> Applicant | None:
    """The applicant, or None when the key was erased (crypto-shredded)."""
    if not key:
        return None
    data = json.loads(_cipher(key).decrypt(b64decode(sealed)).decode())
    return Applicant(**data)
