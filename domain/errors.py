"""Named errors of the write side; each carries a message a person can read (Vietnamese first)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every refusal by the domain. `message_vi` is shown to people, `str()` is English."""

    message_vi: str = "Yêu cầu không hợp lệ."

    def __init__(self, message_en: str, message_vi: str | None = None) -> None:
        super().__init__(message_en)
        if message_vi is not None:
            self.message_vi = message_vi


class NotFound(DomainError):
    message_vi = "Không tìm thấy."


class DossierNotFound(NotFound):
    def __init__(self, code: str) -> None:
        super().__init__(f"dossier {code!r} not found", f"Không tìm thấy hồ sơ có mã {code}.")


class ProcedureNotFound(NotFound):
    def __init__(self, code: str) -> None:
        super().__init__(
            f"procedure {code!r} not found", f"Không tìm thấy thủ tục hành chính mã {code}."
        )


class AgencyNotFound(NotFound):
    def __init__(self, key: str) -> None:
        super().__init__(f"agency {key!r} not found", f"Không tìm thấy cơ quan {key}.")


class OfficerNotFound(NotFound):
    def __init__(self, key: str) -> None:
        super().__init__(f"officer {key!r} not found", f"Không tìm thấy cán bộ {key}.")


class AlreadyExists(DomainError):
    message_vi = "Đã tồn tại."


class InvalidCommand(DomainError):
    """The command's data is malformed or incomplete."""


class NotAllowed(DomainError):
    """The dossier's state, the law or the officer's agency forbids this action now."""


class ConcurrentUpdate(DomainError):
    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} was changed by someone else at the same time; reload and try again",
            "Hồ sơ vừa được người khác cập nhật cùng lúc. Vui lòng tải lại và thao tác lại.",
        )


class IdempotencyConflict(DomainError):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for a different command",
            "Mã thao tác này đã được dùng cho một thao tác khác.",
        )
