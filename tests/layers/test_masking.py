"""The masking policy on text as people write it: what goes, and what must stay."""

from __future__ import annotations

import pytest

from layers.masking import mask_contacts, mask_value

GONE = [
    ("井盖丢了，联系我13912345678", "13912345678"),
    ("电话 139 1234 5678 张先生", "139 1234 5678"),
    ("call 139-1234-5678 please", "139-1234-5678"),
    ("+86 139 1234 5678", "+86 139 1234 5678"),
    ("+8613912345678", "+8613912345678"),
    ("0086-139-1234-5678", "0086-139-1234-5678"),
    ("手机：１３９１２３４５６７８", "１３９１２３４５６７８"),
    ("物业电话021-57781234", "021-57781234"),
    ("(021) 5778 1234 找王经理", "(021) 5778 1234"),
    ("（021）57781234", "（021）57781234"),
    ("021 5778-1234", "021 5778-1234"),
    ("身份证310101199001011234", "310101199001011234"),
    ("身份证号 31010119900101123X 请核实", "31010119900101123X"),
    ("ID 310101 19900101 1234", "310101 19900101 1234"),
    ("mail zhang.san+wy@example.com.cn now", "zhang.san+wy@example.com.cn"),
    ("邮箱 li＠qq.com", "li＠qq.com"),
]

KEPT = [
    "case SJ2026-000123 is a duplicate",  # a case reference
    "at 121.2277, 31.0322 near the gate",  # coordinates
    "grid 310117001001001 and street 310117001",  # grid codes
    "asset 3101170101000001 is missing",  # a component code
    "call the hotline 12345 or 110",  # service numbers are not personal
    "2026-12-01 14:30 reported, 3 covers",  # dates and counts
]


@pytest.mark.parametrize(("text", "secret"), GONE)
def test_personal_numbers_and_addresses_are_masked(text: str, secret: str) -> None:
    masked = mask_contacts(text)
    assert masked is not None and secret not in masked and "removed]" in masked


@pytest.mark.parametrize("text", KEPT)
def test_codes_coordinates_and_service_numbers_stay(text: str) -> None:
    assert mask_contacts(text) == text


def test_every_string_of_event_data_is_masked() -> None:
    data = {"result": "已修复, 回访13912345678", "photos": ["a.jpg"], "hours": 4,
            "nested": {"who": "li@qq.com"}}
    out = mask_value(data)
    assert "13912345678" not in str(out) and "li@qq.com" not in str(out)
    assert out["photos"] == ["a.jpg"] and out["hours"] == 4
