"""Public endpoints of the transparency log: key, signed checkpoints, inclusion and consistency proofs.

Everything here is computed from the public feed (never from personal data); the JSON answers
are what `deploy/verify_proof.py` reads.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from domain.model import dossier_id
from portal.i18n import gettext as _
from portal.system import System
from projections import queries
from projections.feed import digest
from projections.transparency import ProofUnavailable, log_of

DOSSIER_CODE = re.compile(r"^[0-9A-Za-z.]{1,40}-\d{6}-\d{4}$")
JSON_HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"}
# Sizes and positions beyond any log this portal will keep, and within a SQL BIGINT.
MAX_SIZE = 2**62


def system_of(request: Request[Any, Any, Any]) -> System:
    return request.app.state["system"]


def no_proof(e: ProofUnavailable) -> str:
    """Why a proof cannot be made, in the visitor's language."""
    return _("Không lập được bằng chứng: %(reason)s.") % {"reason": _(e.message_vi) % e.values}


def _json(data: Any, immutable: bool = False) -> Response[Any]:
    headers = dict(JSON_HEADERS)
    if immutable:
        headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return Response(data, media_type="application/json", headers=headers)


class TransparencyController(Controller):
    path = "/transparency"
    include_in_schema = False

    @get("/", sync_to_thread=True)
    def overview(self, request: Request[Any, Any, Any]) -> Template:
        log = log_of(system_of(request))
        log.publish_if_due()
        return Template("transparency.html", context={
            "key": log.public_key(), "checkpoints": log.checkpoints(limit=20),
            "latest": log.latest()})

    @get("/key", sync_to_thread=True)
    def key(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return _json(log_of(system_of(request)).public_key())

    @get("/checkpoints", sync_to_thread=True)
    def checkpoints(self, request: Request[Any, Any, Any]) -> Response[Any]:
        log = log_of(system_of(request))
        log.publish_if_due()
        return _json({"checkpoints": [c.public() for c in log.checkpoints()]})

    @get("/checkpoints/latest", sync_to_thread=True)
    def latest(self, request: Request[Any, Any, Any]) -> Response[Any]:
        log = log_of(system_of(request))
        log.publish_if_due()
        cp = log.latest()
        if cp is None:
            raise NotFoundException("Chưa có điểm kiểm tra nào được công bố.")
        return _json(cp.public())

    @get("/checkpoints/{size:int}", sync_to_thread=True)
    def checkpoint(self, request: Request[Any, Any, Any], size: FromPath[int]) -> Response[Any]:
        cp = log_of(system_of(request)).checkpoint(size) if 1 <= size <= MAX_SIZE else None
        if cp is None:
            raise NotFoundException(_("Không có điểm kiểm tra kích thước %(size)s.")
                                    % {"size": size})
        return _json(cp.public(), immutable=True)

    @get("/proofs/inclusion", sync_to_thread=True)
    def inclusion(self, request: Request[Any, Any, Any],
                  position: Annotated[int, QueryParameter(ge=1, le=MAX_SIZE)],
                  size: Annotated[int | None, QueryParameter(ge=1, le=MAX_SIZE)] = None
                  ) -> Response[Any]:
        try:
            return _json(log_of(system_of(request)).inclusion(position, size))
        except ProofUnavailable as e:
            raise NotFoundException(no_proof(e)) from None

    @get("/proofs/consistency", sync_to_thread=True)
    def consistency(self, request: Request[Any, Any, Any],
                    first: Annotated[int, QueryParameter(ge=1, le=MAX_SIZE)],
                    second: Annotated[int, QueryParameter(ge=1, le=MAX_SIZE)]) -> Response[Any]:
        try:
            return _json(log_of(system_of(request)).consistency(first, second))
        except ProofUnavailable as e:
            raise NotFoundException(no_proof(e)) from None

    @get("/dossiers/{code:str}", sync_to_thread=True)
    def dossier(self, request: Request[Any, Any, Any], code: FromPath[str]) -> Template:
        """The public feed records of one dossier, each with a link to its inclusion proof."""
        if not DOSSIER_CODE.match(code):
            raise NotFoundException("Mã hồ sơ không đúng định dạng.")
        s = system_of(request)
        log = log_of(s)
        log.publish_if_due()
        # The positions of its records are the tracker's list of its acts (a search of the
        # feed's text for its id read a province's 2 GB feed: 18 s a page); tracker tables of
        # rules before version 4 have no such list.
        row = queries.dossier(s.db, code)
        if row is None:
            positions = []
        elif "acts" in row:
            positions = [int(p) for p in row["acts"].split(",") if p]
        else:
            positions = log.positions_of(str(dossier_id(code)))
        # (No rows either for acts the feed has not published yet.)
        rows = s.db.fetchall("SELECT position, type, record FROM public_feed WHERE position IN ("
                             + ",".join("?" for _ in positions) + ") ORDER BY position",
                             positions) if positions else []
        if not rows:
            raise NotFoundException(f"Không tìm thấy hồ sơ mã {code} trong nhật ký công khai.")
        latest = log.latest()
        for r in rows:
            r["sha256"] = digest(r.pop("record"))
            r["covered"] = latest is not None and r["position"] <= latest.last_position
        return Template("transparency_dossier.html", context={
            "code": code, "rows": rows, "latest": latest})


ROUTES = [TransparencyController]
