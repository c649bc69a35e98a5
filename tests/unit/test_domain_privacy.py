"""Personal data: the public form of a name, NFC input, sealing with a per-applicant key."""

from __future__ import annotations

import unicodedata

import pytest

from domain.errors import InvalidCommand
from domain.privacy import Applicant, MemoryApplicantKeys, mask_name, nfc, seal, unseal


@pytest.mark.parametrize(("name", "public"), [
    ("Nguyễn Văn An", "Nguyễn V. A."),
    ("  nguyễn   văn an ", "Nguyễn V. A."),
    ("Đặng Thị Ánh Tuyết", "Đặng T. Á. T."),
    ("Mai", "M."),
    ("", ""),
])
def test_mask_name(name, public):
    assert mask_name(name) == public


def test_decomposed_input_is_normalised():
    decomposed = unicodedata.normalize("NFD", "Nguyễn Thị Ánh")
    assert decomposed != "Nguyễn Thị Ánh"
    assert nfc(decomposed) == "Nguyễn Thị Ánh"
    assert mask_name(decomposed) == "Nguyễn T. Á."
    assert Applicant(name=decomposed).normalised().name == "Nguyễn Thị Ánh"


def test_applicant_validation():
    with pytest.raises(InvalidCommand) as e:
        Applicant(name="   ").normalised()
    assert "họ tên" in e.value.message_vi
    with pytest.raises(InvalidCommand):
        Applicant(name="A" * 201).normalised()
    with pytest.raises(InvalidCommand) as e:
        Applicant(name="Công ty A", kind=7).normalised()
    assert "Loại đối tượng" in e.value.message_vi


@pytest.mark.parametrize("name", ["001099012345 Nguyễn Văn Bình", "Nguyễn Văn Bình 0912345678",
                                  "binh@example.org", "Nguyễn Văn Bình (binh@example.org)"])
def test_a_citizens_name_cannot_carry_numbers_or_an_email_address(name):
    """The name is published masked: an ID or phone number typed into it would be too."""
    with pytest.raises(InvalidCommand) as e:
        Applicant(name=name).normalised()
    assert "chữ số" in e.value.message_vi


def test_an_organisations_name_may_hold_digits_but_no_email_address():
    assert Applicant(name="Công ty TNHH Xây dựng 579", kind=2).normalised().kind == 2
    with pytest.raises(InvalidCommand):
        Applicant(name="Công ty A info@a.vn", kind=2).normalised()


def test_sealed_data_is_unreadable_without_the_key_and_gone_once_erased():
    keys = MemoryApplicantKeys()
    key = keys.create("applicant:1")
    assert keys.create("applicant:1") == key  # one key per applicant
    person = Applicant(name="Trần Thị Cúc", id_number="001199000111", phone="0912000111")
    sealed = seal(person, key)
    assert "Trần" not in sealed and "001199000111" not in sealed
    assert unseal(sealed, keys.get("applicant:1")) == person
    keys.erase("applicant:1")
    assert keys.get("applicant:1") is None
    assert unseal(sealed, keys.get("applicant:1")) is None
    other = keys.create("applicant:2")
    with pytest.raises(ValueError):  # another applicant's key cannot open it
        unseal(sealed, other)


# Written by the pycryptodome AES-GCM cipher that sealed applicants and encrypted the event store
# before (eventsourcing.cipher.AESCipher: nonce, tag, ciphertext): stored data stays readable.
EARLIER_KEY = "d0yqyYvjrDEe1mSxIvl+AgdxMZUh9mfZjhyuFrgvMj4="
EARLIER_SEALED = ("Jnucs98zzIijOjP7SIkhMjEOmIk28tF1DCMtXaTidZLUFtEYMEsPvnjwtqaNDmfSn35gNXiHikot4m96"
                  "tmSpp5iwDXtzhQDBMA2k")


def test_data_sealed_by_the_earlier_cipher_is_read_by_the_current_one():
    from base64 import b64decode

    from eventsourcing.utils import Environment, resolve_topic

    from portal.settings import Settings

    topic = Settings(cipher_key=EARLIER_KEY).eventsourcing_env()["CIPHER_TOPIC"]
    cipher = resolve_topic(topic)(Environment(env={"CIPHER_KEY": EARLIER_KEY}))
    assert cipher.decrypt(b64decode(EARLIER_SEALED)).decode() == \
        "Hồ sơ của Nguyễn Văn A — 001099000123"
    sealed = cipher.encrypt(b"x")
    assert cipher.decrypt(sealed) == b"x" and len(sealed) == 12 + 16 + 1
