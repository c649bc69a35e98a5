"""The procedure index on a real Meilisearch: documents from the catalogue, settings, usage ranking,
filters, safe highlighting, and `portal search reindex` (temporary index swapped in, never empty).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading

import meilisearch
import pytest

from portal.commands.search import cmd_search
from search.service import SETTINGS, SearchSync, load_synonyms
from tests.factories import PERSONAL, applicant, at, procedure, small_province


@pytest.fixture
def system(backend_settings, meili_index, make_system):
    settings = backend_settings.with_(**meili_index)
    s = make_system(settings)
    small_province(s.app)
    return s


def meili_client(system) -> meilisearch.Client:
    return meilisearch.Client(system.settings.meili_url, system.settings.meili_key)


def search(system, q: str, **filters: str):
    return asyncio.run(_search(system, q, filters))


async def _search(system, q, filters):
    try:
        return await system.search.search(q, filters)
    finally:
        await system.search.aclose()


def test_documents_come_from_the_catalogue_read_model(system):
    system.app.receive_dossier(procedure_code="1.009994", agency="xa-a", channel="in_person",
                               applicant=applicant(), received_at=at(2025, 9, 3, 9),
                               officer="tn-1")
    system.catch_up()
    doc = meili_client(system).index(system.settings.meili_index).get_document("1_009994")
    doc = dict(doc)
    doc.pop("_Document__doc", None)
    assert doc["code"] == "1.009994"
    assert doc["name"] == "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ"
    assert doc["field"] == "Xây dựng" and doc["level"] == "commune"
    assert doc["channels"] == ["in_person", "online", "postal"]
    assert doc["time"] == "15 ngày làm việc" and doc["fee"] == "75.000 đ"
    assert doc["keywords"] == ["xin phép xây nhà"]
    assert doc["usage_count"] == 1 and doc["usage_bucket"] == 1
    assert doc["status"] == "active" and doc["online_level"] == "partial"
    blob = json.dumps(doc, ensure_ascii=False)
    for value in PERSONAL:  # a dossier was received: nothing of its applicant reaches the index
        assert value not in blob


def test_index_settings_are_applied_on_purpose(system):
    system.catch_up()
    index = meili_client(system).index(system.settings.meili_index)
    settings = index.get_settings()
    assert settings["searchableAttributes"] == SETTINGS["searchableAttributes"]
    assert set(settings["filterableAttributes"]) == set(SETTINGS["filterableAttributes"])
    assert settings["rankingRules"] == SETTINGS["rankingRules"]
    assert settings["typoTolerance"]["enabled"] is True
    assert settings["synonyms"]["sổ đỏ"] == load_synonyms()["sổ đỏ"]


def test_usage_breaks_ties_between_equally_good_matches(system):
    system.app.publish_procedure(procedure("7.000001", "Chứng thực bản sao giấy tờ loại một",
                                           field="Chứng thực"))
    system.app.publish_procedure(procedure("7.000002", "Chứng thực bản sao giấy tờ loại hai",
                                           field="Chứng thực"))
    system.catch_up()
    before = [h.code for h in search(system, "chung thuc ban sao").hits]
    assert before[:2] == ["7.000001", "7.000002"]  # equal: Meilisearch keeps insertion order
    for i in range(4):
        system.app.receive_dossier(procedure_code="7.000002", agency="xa-a",
                                   channel="in_person", applicant=applicant(),
                                   received_at=at(2025, 9, 3, 9, i), officer="tn-1")
    system.catch_up()
    # Popularity only reorders: a kept answer stands until it expires (CACHE_SECONDS).
    assert [h.code for h in search(system, "chung thuc ban sao").hits] == before
    system.search._cache.clear()
    after = [h.code for h in search(system, "chung thuc ban sao").hits]
    assert after[:2] == ["7.000002", "7.000001"]


def test_filters_level_and_field(system):
    system.app.publish_procedure(procedure("2.001000", "Cấp phiếu lý lịch tư pháp cho công dân",
                                           field="Lý lịch tư pháp", level="province", days=10))
    system.catch_up()
    assert [h.code for h in search(system, "cấp", level="province").hits] == ["2.001000"]
    assert [h.code for h in search(system, "cap", level="commune").hits] == ["1.009994",
                                                                            "1.001193"]
    assert [h.code for h in search(system, "", field="Xây dựng").hits] == ["1.009994"]
    assert search(system, "", field='Xây dựng" OR level = "province').hits == []


def test_highlighting_escapes_before_marking(system):
    system.app.publish_procedure(procedure("9.000666", 'Đăng ký <img src=x onerror="alert(1)"> sinh',
                                           field="Thử nghiệm"))
    system.catch_up()
    hit = next(h for h in search(system, "đăng ký sinh").hits if h.code == "9.000666")
    assert "<img" not in hit.name_html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in hit.name_html
    assert "<mark>" in hit.name_html


def test_reindex_swaps_a_temporary_index_and_search_is_never_empty(system):
    for i in range(300):
        system.app.publish_procedure(procedure(f"6.{i:06d}", f"Thủ tục đăng ký số {i}",
                                               field="Hộ tịch"))
    system.catch_up()
    client = meili_client(system)
    live = system.settings.meili_index
    seen: list[int] = []
    errors: list[Exception] = []
    done = threading.Event()

    def keep_searching() -> None:
        while not done.is_set():
            try:
                seen.append(client.index(live).search("đăng ký", {"limit": 1})
                            ["estimatedTotalHits"])
            except Exception as e:  # an error would be an outage the citizen sees
                errors.append(e)

    reader = threading.Thread(target=keep_searching)
    reader.start()
    try:
        n = system.sync.reindex()
    finally:
        done.set()
        reader.join()
    assert n == 302
    assert errors == []
    assert len(seen) > 3  # queries really ran while the index was rebuilt
    assert min(seen) > 0  # never empty
    names = [i.uid for i in client.get_indexes({"limit": 1000})["results"]]
    assert not [x for x in names if x.startswith(live + "_build_")]  # the temporary one is gone
    assert client.index(live).get_stats().number_of_documents == 302


def test_an_update_during_a_reindex_is_not_lost(system):
    system.catch_up()

    def meanwhile(done: int, total: int) -> None:
        # The background sync runs while the new index is being built, and writes to the old one.
        system.app.amend_procedure(procedure("1.001193", "Đăng ký khai sinh (tên mới)"))
        system.runner.catch_up()
        system.sync.run_once()

    n = system.sync.reindex(progress=meanwhile)
    assert n == 2
    doc = meili_client(system).index(system.settings.meili_index).get_document("1_001193")
    assert doc.name == "Đăng ký khai sinh (tên mới)"


def test_cli_reindex(system, capsys):
    system.catch_up()
    rc = cmd_search(argparse.Namespace(action="reindex"), system.settings)
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"indexed": 2}


def test_cli_reindex_without_meilisearch_is_a_clear_error(sqlite_settings, capsys):
    rc = cmd_search(argparse.Namespace(action="reindex"), sqlite_settings)
    assert rc != 0
    assert "PORTAL_MEILI_URL" in capsys.readouterr().err


def test_cached_answers_follow_the_index(system):
    system.catch_up()
    first = search(system, "khai sinh")
    assert first.hits[0].name == "Đăng ký khai sinh"
    assert search(system, "khai sinh") is first  # the same answer, from the cache
    system.app.amend_procedure(procedure("1.001193", "Đăng ký khai sinh cho trẻ em"))
    system.catch_up()
    again = search(system, "khai sinh")
    assert again.hits[0].name == "Đăng ký khai sinh cho trẻ em"


def test_once_the_server_is_found_down_remembered_answers_give_way_to_the_fallback(system):
    """A remembered answer would hide what was published during an outage: once a query finds
    the server down, every query is answered by the fallback, until the server is back."""
    system.catch_up()
    service = system.search
    first = search(system, "khai sinh")
    assert not first.fallback and search(system, "khai sinh") is first
    url = service.url
    service.url, service._async = "http://127.0.0.1:9", None  # nothing listens there
    try:
        other = search(system, "giấy phép xây dựng")  # not remembered: finds the server down
        assert other.fallback and service.down_since is not None
        during = search(system, "khai sinh")
        assert during is not first and during.fallback
        assert during.hits[0].name == "Đăng ký khai sinh"
    finally:
        service.url, service._async = url, None
    service.retry_at = 0.0  # the next query asks the server again (once a second)
    back = search(system, "khai sinh")
    assert not back.fallback and service.down_since is None
    assert back.hits[0].name == "Đăng ký khai sinh"


def test_a_popularity_sync_keeps_answers_a_content_sync_replaces_them(system):
    """A procedure crossing a popularity bucket (every second or two on a busy morning) is
    synced to the index but does not send every search to Meilisearch again; a change of what
    answers show does, in every process (the position is shared)."""
    system.catch_up()
    first = search(system, "khai sinh")
    answers = system.db.scalar("SELECT position FROM projection_tracking WHERE name=?",
                               (system.search.answers_name,))
    bucket = system.db.scalar("SELECT usage_bucket FROM procedures WHERE code='1.001193'")
    system.app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                               applicant=applicant(), received_at=at(2025, 9, 3, 9, 0),
                               officer="tn-1")
    system.runner.catch_up()
    assert system.db.scalar("SELECT usage_bucket FROM procedures WHERE code='1.001193'") != bucket
    worker = SearchSync(system.search)  # as a projection worker started after the index was built
    assert worker.catch_up() == 1  # the new bucket is sent to the index ...
    assert system.db.scalar("SELECT position FROM projection_tracking WHERE name=?",
                            (system.search.answers_name,)) == answers
    assert search(system, "khai sinh") is first  # ... and the kept answer still stands
    system.app.amend_procedure(procedure("1.001193", "Đăng ký khai sinh cho trẻ em"))
    system.catch_up()
    assert system.db.scalar("SELECT position FROM projection_tracking WHERE name=?",
                            (system.search.answers_name,)) == answers + 1
    again = search(system, "khai sinh")
    assert again is not first
    assert again.hits[0].name == "Đăng ký khai sinh cho trẻ em"


def test_sql_fallback_filters_and_ranks_like_the_index(backend_settings, make_system):
    s = make_system(backend_settings)  # no Meilisearch at all: every answer is the fallback
    small_province(s.app)
    s.app.publish_procedure(procedure("1.001022", "Đăng ký khai sinh lưu động",
                                      keywords=["khai sinh lưu động"]))
    record = procedure("2.001000", "Cấp phiếu lý lịch tư pháp", field="Lý lịch tư pháp",
                       level="province", days=10)
    record["implementing_agency"] = "Công an tỉnh"
    s.app.publish_procedure(record)
    s.runner.catch_up()
    result = search(s, "khai sinh")
    assert result.fallback
    assert [h.code for h in result.hits] == ["1.001193", "1.001022"]  # the general case first
    assert [h.code for h in search(s, "ly lich", level="province").hits] == ["2.001000"]
    assert search(s, "ly lich", level="commune").hits == []
    assert [h.code for h in search(s, "", agencies="Công an tỉnh").hits] == ["2.001000"]
    assert "<mark>" not in search(s, "khai sinh").hits[0].name_html  # escaped, never raw


def test_fillers_spellings_and_office_names_find_the_procedure(system):
    """From a search audit: a filler at the start ("thủ tục", "xin", "cách") was a word every
    hit had to contain, "kí" found nothing of "ký", and "UBND" matched no office."""
    system.catch_up()
    for q in ("thủ tục khai sinh", "xin đăng ký khai sinh cho con", "cách đăng kí khai sinh",
              "dang ki khai sinh o dau"):
        hits = search(system, q).hits
        assert hits and hits[0].code == "1.001193", (q, [h.code for h in hits])
        assert search(system, q).query == q  # the page says what the visitor typed
    for q in ("UBND xã", "ubnd xa", "UBND"):
        assert len(search(system, q).hits) == 2, q  # both are done by Ủy ban nhân dân cấp xã


def test_fallback_answers_of_the_search_api_are_kept_by_no_cache(sqlite_settings, make_system):
    from litestar.testing import TestClient

    from portal.app import create_app

    system = make_system(sqlite_settings)  # no Meilisearch: every answer is the fallback's
    small_province(system.app)
    system.catch_up()
    with TestClient(app=create_app(sqlite_settings, system)) as client:
        r = client.get("/api/search", params={"q": "khai sinh"})
        assert r.json()["fallback"] is True and r.json()["hits"][0]["code"] == "1.001193"
        assert r.headers["cache-control"] == "no-store"
        long = client.get("/search", params={"q": "khai sinh " + "x" * 600})
        assert long.status_code == 200  # a pasted long text is searched, not refused


def test_the_count_says_when_only_the_first_results_are_listed(sqlite_settings, make_system):
    from litestar.testing import TestClient

    from portal.app import create_app
    from tests.factories import procedure

    system = make_system(sqlite_settings)
    small_province(system.app)
    for i in range(25):
        system.app.publish_procedure(procedure(f"2.{900000 + i:06d}", f"Cấp phép thử nghiệm {i}",
                                               field="Thử nghiệm"))
    system.catch_up()
    with TestClient(app=create_app(sqlite_settings, system)) as client:
        page = client.get("/search", params={"q": "thử nghiệm", "lang": "vi"}).text
        assert page.count('<li>\n      <a href="/p/') == 20
        assert ("20 kết quả đầu tiên trong số 25 cho “thử nghiệm”; hãy gõ thêm từ hoặc chọn lĩnh"
                " vực để thu hẹp") in page
