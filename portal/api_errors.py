"""The JSON error body of the API, documented in the OpenAPI document where a route can send it."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.datastructures import ResponseSpec

DESCRIPTIONS = {
    404: "Không tìm thấy (mã không đúng định dạng hoặc không tồn tại)",
    429: "Quá nhiều lần tra cứu trong một phút (thử lại sau Retry-After giây)",
}


@dataclass
class ApiError:
    """`status_code` and `detail` as Litestar's own errors; `error` is the Vietnamese title."""

    status_code: int
    status: int
    error: str
    detail: str


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    return {c: ResponseSpec(data_container=ApiError, description=DESCRIPTIONS[c],
                            generate_examples=False) for c in codes}
