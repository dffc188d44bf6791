"""The console's pure pieces: charts, the submit form, formatting, the palette's contrast, and
the per-day ledger reports (on real SQLite and PostgreSQL: the day grouping is SQL)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from gpucloud.billing.ledger import (
    AccountKind,
    LedgerTx,
    TxKind,
    move,
    system_account,
    wallet_account,
)
from gpucloud.console import charts, formatting, forms, reports
from gpucloud.console.render import HERE
from gpucloud.console.reports import Day
from gpucloud.core.states import JobState
from gpucloud.store import ledger
from gpucloud.store.db import Database

CSS = (HERE / "static" / "console.css").read_text()


def test_the_axis_has_round_exact_steps() -> None:
    assert charts.axis_top(0) == 4
    assert charts.axis_top(4) == 4  # 0.01 steps for 0.04
    assert charts.axis_top(5) == 8
    assert charts.axis_top(37_000) == 40_000
    assert charts.axis_top(120_001) == 200_000
    for peak in (1, 7, 99, 1234, 98_765):
        top = charts.axis_top(peak)
        assert top >= peak and top % charts.TICKS == 0


def test_the_chart_is_an_accessible_svg_with_one_bar_a_day() -> None:
    days = [Day(date(2026, 11, 1) + timedelta(days=i), minor) for i, minor in
            enumerate([0, 1250, 0, 400])]
    svg = str(charts.bar_chart(days, "CNY", "Spend <per> day", "c1"))
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert 'aria-labelledby="c1-t c1-d"' in svg
    assert "<title id=\"c1-t\">Spend &lt;per&gt; day</title>" in svg
    assert "Total 16.50 CNY over 4 days; highest on 2026-11-02: 12.50 CNY" in svg
    assert svg.count('class="bar"') == 4
    assert "<title>2026-11-04: 4.00 CNY</title>" in svg
    labels = re.findall(r'text-anchor="end">([^<]+)<', svg)
    assert labels == ["0", "5", "10", "15", "20"]  # peak 12.50: four steps of 5


def test_an_empty_chart_still_draws() -> None:
    svg = str(charts.bar_chart([], "CNY", "Nothing", "c2"))
    assert "Total 0.00 CNY over 0 days" in svg


def test_the_form_becomes_the_apis_request() -> None:
    parsed = forms.parse({"command": "python train.py\r\n", "nodes": "2", "gpus": "4",
                          "gpu_type": "h100", "cpus": "2.5", "memory": "16G",
                          "max_duration": "2h", "env": "# comment\nA=1\n\nB = x=y\n",
                          "priority": "5", "tier": "spot", "name": "run-1"})
    assert parsed.error == "" and parsed.spec is not None
    spec = parsed.spec
    assert spec.command == ["/bin/sh", "-c", "python train.py\n"]
    assert (spec.nodes, spec.gpus, spec.gpu_type, spec.cpus) == (2, 4, "H100", 2.5)
    assert (spec.memory_mib, spec.max_duration_s, spec.priority) == (16 * 1024, 7200, 5)
    assert spec.env == {"A": "1", "B": " x=y"}
    assert spec.tier.value == "spot" and spec.name == "run-1"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"command": ""}, "command", "enter the command to run"),
        ({"gpus": "two"}, "gpus", "gpus: enter a whole number, got 'two'"),
        ({"cpus": "lots"}, "cpus", "cpus: enter a number"),
        ({"env": "JUSTAKEY"}, "env", "env line 1: write KEY=VALUE"),
        ({"memory": "sixteen"}, "memory", "memory"),
        ({"name": "Bad Name"}, "name", "name: use 1-63 lower-case letters"),
        ({"gpus": "0", "gpu_type": "H100"}, "", "ask for at least one GPU"),
    ],
)
def test_form_errors_name_the_field(fields: dict[str, str], field: str, message: str) -> None:
    parsed = forms.parse({"command": "true", **fields})
    assert parsed.spec is None
    assert message in parsed.error
    assert parsed.error_field == field
    assert parsed.values["command"] == fields.get("command", "true")  # kept for the re-render


def test_formatting() -> None:
    assert formatting.duration(None) == "-"
    assert formatting.duration(45) == "45 s"
    assert formatting.duration(125) == "2 min 05 s"
    assert formatting.duration(3600 * 3 + 300) == "3 h 05 min"
    assert formatting.duration(86400 * 4 + 7200) == "4 d 2 h"
    assert formatting.mib(512) == "512 MiB"
    assert formatting.mib(16 * 1024) == "16 GiB"
    assert formatting.mib(24105) == "23.5 GiB"
    assert formatting.plural(1, "CPU", "CPUs") == "1 CPU"
    assert formatting.plural(2.5, "CPU", "CPUs") == "2.5 CPUs"


def test_every_job_state_has_a_badge() -> None:
    for state in JobState:
        assert f".state-{state.value.lower()}" in CSS, state


def _luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(fg: str, bg: str) -> float:
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_text_colours_meet_wcag_aa_contrast() -> None:
    palette = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", CSS))
    declared = re.search(r"/\* CONTRAST:(.*?)\*/", CSS, re.S)
    assert declared, "console.css lists the text/background pairs it uses under CONTRAST"
    pairs = [p.split("/") for p in declared.group(1).split()]
    assert len(pairs) >= 15
    for fg, bg in pairs:
        ratio = contrast(palette[fg], palette[bg])
        assert ratio >= 4.5, f"--{fg} on --{bg}: {ratio:.2f}:1, below 4.5:1"


def test_no_third_party_script_is_shipped() -> None:
    static = sorted(p.name for p in (HERE / "static").iterdir())
    assert static == ["console.css", "console.js"]
    script = (HERE / "static" / "console.js").read_text()
    assert "http://" not in script and "https://" not in script
    templates = "".join(p.read_text() for p in Path(HERE / "templates").rglob("*.html"))
    assert "<script src=\"/static/console.js\" defer></script>" in templates
    assert "<script>" not in templates and " style=" not in templates  # CSP: no inline code


def _charge(tenant: str, minor: int, at: datetime, key: str) -> LedgerTx:
    return LedgerTx(key, TxKind.CHARGE, move(wallet_account(tenant, "CNY"),
                    system_account(AccountKind.REVENUE, "CNY"), minor), tenant_id=tenant)


def test_money_per_day_comes_from_the_ledger_by_utc_day(db: Database) -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    with db.write() as session:
        ledger.post(session, [_charge("tnt_a", 100, now, "a1")], now - timedelta(days=1, hours=1))
        ledger.post(session, [_charge("tnt_a", 250, now, "a2")], datetime(2026, 11, 19, 23, 59,
                                                                           tzinfo=UTC))
        ledger.post(session, [_charge("tnt_a", 7, now, "a3")], datetime(2026, 11, 20, 0, 0, 1,
                                                                         tzinfo=UTC))
        ledger.post(session, [_charge("tnt_b", 1000, now, "b1")], now)
        ledger.post(session, [_charge("tnt_a", 5, now, "old")], now - timedelta(days=30))
    with db.read() as session:
        spend = reports.tenant_spend(session, "tnt_a", "CNY", now, 3)
        revenue = reports.revenue(session, now, 3)
    assert [(d.day.isoformat(), d.minor) for d in spend] == [
        ("2026-11-18", 0), ("2026-11-19", 350), ("2026-11-20", 7)]
    assert [(d.day.isoformat(), d.minor) for d in revenue] == [
        ("2026-11-18", 0), ("2026-11-19", 350), ("2026-11-20", 1007)]
