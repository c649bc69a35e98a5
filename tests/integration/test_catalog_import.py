"""`portal catalog import FILE`: good national records are published or amended, bad ones reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from domain.errors import ProcedureNotFound
from portal.commands.catalog import import_records, read_records
from projections import queries
from tests.factories import procedure

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "tests" / "data" / "national_catalogue.json"
GOOD = {"1.001193", "1.009994", "2.000815.000.00.00.H60"}


def run_cli(settings: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update({"PORTAL_VAR_DIR": str(settings.var_dir), "PORTAL_SECRET_KEY": settings.secret_key})
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def catalogue_codes(system: Any) -> set[str]:
    system.catch_up()
    return {r["code"] for r in system.db.fetchall("SELECT code FROM procedures")}


def test_good_records_are_published_and_each_bad_one_is_reported(backend_settings, make_system):
    system = make_system(backend_settings)
    report = import_records(system.app, read_records(FILE))
    assert sorted(report["published"]) == sorted(GOOD)
    bad = {b["index"]: b for b in report["bad"]}
    assert sorted(bad) == [4, 5, 6, 7, 8, 9, 10]
    assert "thiếu mã thủ tục" in bad[4]["reason"]
    assert "không đúng dạng" in bad[5]["reason"] and bad[5]["code"] == "ABC-123"
    assert "ngày lịch" in bad[6]["reason"]
    assert "thành phần hồ sơ" in bad[7]["reason"]
    assert "hơn một lần" in bad[8]["reason"]
    assert "đối tượng JSON" in bad[9]["reason"]
    assert "kênh thực hiện không rõ" in bad[10]["reason"]
    # Nothing of a bad record was written.
    assert catalogue_codes(system) == GOOD
    for code in ("ABC-123", "1.004227", "1.000656", "1.001022"):
        with pytest.raises(ProcedureNotFound):
            system.app.procedure(code)

    birth = system.app.procedure("1.001193").record
    assert birth["name"] == "Thủ tục đăng ký khai sinh" and birth["field_code"] == "G09-TP03"
    assert birth["level"] == "commune" and birth["online_level"] == "full"
    assert birth["processing_time"] == {"value": 1, "unit": "same_day"}
    assert [c["channel"] for c in birth["channels"]] == ["in_person", "online", "postal"]
    assert birth["cutoff_15h"] is True  # civil status: the 15:00 rule applies
    assert birth["decision"] == {"number": "1872/QĐ-BTP", "date": "2020-09-04",
                                 "effective": "2020-09-04"}
    assert birth["steps"][0].startswith("Bước 1") and len(birth["steps"]) == 2
    assert birth["legal_basis"] == ["60/2014/QH13 Luật Hộ tịch", "Nghị định 123/2015/NĐ-CP"]
    assert [c["name"] for c in birth["components"]] == ["Tờ khai đăng ký khai sinh theo mẫu",
                                                         "Giấy chứng sinh"]
    assert birth["components"][0]["template"] == "ToKhaiKhaiSinh.docx"
    build = system.app.procedure("1.009994").record
    assert build["processing_time"] == {"value": 15, "unit": "working_days"}
    assert build["channels"][0]["fee_vnd"] == 75000 and build["cutoff_15h"] is False
    assert sum(s["hours"] for s in build["workflow"]) == 15 * 8
    # The catalogue read model (and so the public pages and search) shows the imported records.
    row = queries.procedure(system.db, "2.000815.000.00.00.H60")
    assert row["name"].startswith("Chứng thực bản sao") and row["status"] == "active"

    # Importing the same file again appends nothing.
    head = system.runner.head()
    again = import_records(system.app, read_records(FILE))
    assert sorted(again["unchanged"]) == sorted(GOOD) and again["published"] == []
    assert system.runner.head() == head


def test_an_import_amends_a_known_procedure_and_keeps_the_provinces_own_fields(sqlite_settings,
                                                                               make_system):
    system = make_system(sqlite_settings)
    mine = procedure("1.009994", "Cấp giấy phép xây dựng (tên cũ)", field="Xây dựng", days=15,
                     cutoff=False, keywords=["xin phép xây nhà"], fee=50000)
    system.app.publish_procedure(mine)
    records = [r for r in read_records(FILE) if isinstance(r, dict) and r.get("MATTHC") == "1.009994"]
    report = import_records(system.app, records)
    assert report["amended"] == ["1.009994"] and report["bad"] == []
    amended = system.app.procedure("1.009994").record
    assert amended["name"] == "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ"
    assert amended["channels"][0]["fee_vnd"] == 75000
    assert amended["workflow"] == mine["workflow"]  # same statutory time: the workflow is kept
    assert amended["keywords"] == ["xin phép xây nhà"]

    system.app.abolish_procedure("1.009994", decision="99/QĐ-UBND", effective="2026-01-01")
    changed = [{**records[0], "TENTTHC": "Tên mới sau khi bãi bỏ"}]
    report = import_records(system.app, changed)
    assert report["bad"][0]["code"] == "1.009994" and "bãi bỏ" in report["bad"][0]["reason"]


def test_portal_catalog_import_exits_non_zero_and_names_each_bad_record(sqlite_settings,
                                                                        make_system, tmp_path):
    out = run_cli(sqlite_settings, "catalog", "import", str(FILE))
    assert out.returncode == 1, out.stderr
    summary = json.loads(out.stdout)
    assert summary["published"] == 3 and summary["bad"] == 7
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("portal: bản ghi")]
    assert len(lines) == 7
    assert any("(ABC-123)" in ln and "không đúng dạng" in ln for ln in lines)

    good_only = tmp_path / "good.json"
    good_only.write_text(json.dumps([r for r in read_records(FILE)[:3]], ensure_ascii=False),
                         encoding="utf-8")
    out = run_cli(sqlite_settings, "catalog", "import", str(good_only))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["unchanged"] == 3

    broken = tmp_path / "broken.json"
    broken.write_text('[{"MATTHC": "1.001193",', encoding="utf-8")
    out = run_cli(sqlite_settings, "catalog", "import", str(broken))
    assert out.returncode == 2 and "không phải JSON hợp lệ" in out.stderr
    out = run_cli(sqlite_settings, "catalog", "import", str(tmp_path / "missing.json"))
    assert out.returncode == 2 and "không đọc được tệp" in out.stderr
    assert catalogue_codes(make_system(sqlite_settings)) == GOOD
