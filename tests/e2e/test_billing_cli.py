"""Billing through the real CLI against the session's real server (see conftest.py): prices,
top-ups, a metered job, usage, dry runs, refusal at zero, the ledger and operator settings.

Prices are set to H100 = 3600 per GPU-hour (1.00 a second) with free CPU and memory so that
every charge is exact. Only the new tenants made here are billed: the operator tenant that the
other e2e tests use is not, so these prices do not change their outcome.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gpucloud.usage_csv import USAGE_CSV_COLUMNS
from tests.e2e.conftest import Cloud, gated, wait_for

pytestmark = pytest.mark.slow
RUNWAY = "billing.admission_runway_seconds"
H100_JOB = ("--gpus", "1", "--gpu-type", "H100", "--cpus", "0.1")
SETTLED_S = 2.0  # usage unchanged this long after the job ended: the meter is closed


@pytest.fixture(autouse=True)
def free_fleet(cloud: Cloud, gate: Path) -> Iterator[None]:
    yield
    gate.touch()
    cloud.settle()


@pytest.fixture(scope="module")
def priced(cloud: Cloud) -> None:
    """H100 at 1.00 a second, CPU and memory free: charges are exact whole seconds."""
    with cloud.sdk() as api:
        book = api.set_price("H100", "3600", cpu_core_hour="0", memory_gib_hour="0")
    assert book.gpu_hour["H100"].amount == "3600.00"
    assert book.cpu_core_hour.minor == book.memory_gib_hour.minor == 0


def new_tenant(cloud: Cloud, prefix: str = "bill") -> tuple[str, str]:
    """A fresh tenant (billed, zero balance) and the token of a member of it."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    with cloud.sdk() as api:
        api.create_tenant(name)
        user = api.create_user(f"{name}-user", tenant=name)
    return name, user.token


def failed(result: Any) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one 'error: ...' line, never a traceback
    assert lines[0].startswith("error: ")
    line: str = lines[0]
    return line


def settled_usage(cloud: Cloud, token: str, job_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job's usage row and the wallet (as the CLI prints them) once the meter has stopped
    moving; polled through the SDK, which is quicker than a CLI process per look."""
    seen: list[tuple[str, float]] = []

    def probe() -> bool:
        with cloud.sdk(token) as api:
            wallet = api.wallet()
            rows = [r.model_dump(mode="json") for r in api.usage() if r.job_id == job_id]
        if wallet.running_allocations or len(rows) != 1:
            return False
        snapshot = json.dumps([rows, wallet.balance_minor], sort_keys=True)
        if not seen or seen[-1][0] != snapshot:
            seen.append((snapshot, time.monotonic()))
            return False
        return time.monotonic() - seen[-1][1] >= SETTLED_S

    wait_for(probe, f"the meter of {job_id} to settle")
    rows = [r for r in cloud.json("usage", token=token) if r["job_id"] == job_id]
    assert len(rows) == 1
    return rows[0], cloud.json("wallet", token=token)


def dry_runs_submit_nothing(cloud: Cloud, token: str, balance: str) -> None:
    """A dry run prices the job and asks the wallet, without submitting anything."""
    jobs_before = cloud.json("ps", "--all", token=token)
    dry = cloud.cli("run", "--dry-run", *H100_JOB, "--max-duration", "1h", "--", "true",
                    token=token)  # fmt: skip
    assert dry.returncode == 1, dry.stderr  # 14.00 does not cover the runway at 3600/h
    assert "3600.00 CNY per hour" in dry.stdout
    assert "top up" in dry.stdout
    estimate = json.loads(cloud.cli("run", "--dry-run", "--json", *H100_JOB, "--max-duration",
                                    "1h", "--", "true", token=token).stdout)  # fmt: skip
    assert estimate["price_per_hour"]["amount"] == "3600.00"
    assert estimate["cost_for_max_duration"]["amount"] == "3600.00"
    assert estimate["balance"]["amount"] == balance
    assert (estimate["funds_ok"], estimate["fits_fleet"]) == (False, True)
    short = cloud.cli("run", "--dry-run", *H100_JOB, "--max-duration", "2s", "--", "true",
                      token=token)  # fmt: skip
    assert short.returncode == 0, short.stdout
    assert "would be admitted now" in short.stdout
    assert cloud.json("ps", "--all", token=token) == jobs_before


def test_price_set_adds_a_version_and_prices_show_it(cloud: Cloud, priced: None) -> None:
    before = cloud.json("prices")["current"]["version"]
    out = cloud.ok("price", "set", "H100", "3600")
    assert f"v{before + 1}" in out
    assert "H100 3600.00 CNY per GPU-hour" in out
    as_json = cloud.json("price", "set", "h100", "3600.00")  # model names are case-insensitive
    assert as_json["version"] == before + 2
    book = cloud.json("prices")
    current = book["current"]
    assert current["version"] == before + 2
    assert current["gpu_hour"]["H100"] == {"amount": "3600.00", "minor": 360000,
                                           "currency": "CNY"}  # fmt: skip
    assert [v["version"] for v in book["versions"]][-3:] == [before, before + 1, before + 2]
    human = cloud.ok("prices")
    assert f"price book v{before + 2}" in human
    assert "3600.00 CNY" in human
    for label in ("CPU core-hour", "memory GiB-hour", "storage GiB-month", "spot discount"):
        assert label in human
    assert "unknown GPU type" in failed(cloud.cli("price", "set", "B9000", "1"))
    assert "amount" in failed(cloud.cli("price", "set", "H100", "lots"))


def test_a_six_second_job_is_charged_per_second(cloud: Cloud, priced: None) -> None:
    tenant, token = new_tenant(cloud)
    ref = f"pay-{secrets.token_hex(4)}"
    first = cloud.json("admin", "topup", tenant, "20", "--ref", ref)
    replay = cloud.json("admin", "topup", tenant, "20", "--ref", ref)
    assert first["balance"] == replay["balance"] == "20.00"  # the same ref counts once
    assert "balance 20.00 CNY" in cloud.ok("admin", "topup", tenant, "20", "--ref", ref)
    assert cloud.json("wallet", "--tenant", tenant)["balance"] == "20.00"
    assert cloud.json("wallet", token=token)["balance"] == "20.00"

    # At 1.00 a second a 20.00 wallet covers a max duration of 15 s, not the default runway.
    job = cloud.json("run", *H100_JOB, "--max-duration", "15s", "--wait", "--",
                     "sleep", "6", token=token)  # fmt: skip
    assert job["state"] == "SUCCEEDED"

    row, wallet = settled_usage(cloud, token, job["id"])
    assert (row["gpu_model"], row["gpus"], row["currency"]) == ("H100", 1, "CNY")
    assert row["gpu_seconds"] == row["seconds"] >= 1
    assert row["cost_minor"] == row["seconds"] * 100  # 1.00 per GPU-second, exactly
    assert Decimal(row["cost"]) == Decimal(row["seconds"])
    assert wallet["balance_minor"] == 2000 - row["cost_minor"]
    assert Decimal(wallet["balance"]) == Decimal("20.00") - Decimal(row["cost"])
    assert abs(Decimal(wallet["balance"]) - Decimal("14.00")) <= Decimal("1.5")  # acceptance
    assert wallet["seconds_left"] is None
    assert wallet["burn_rate_per_hour"] == "0.00"
    human = cloud.ok("wallet", token=token)
    assert f"{wallet['balance']} CNY" in human
    assert "not burning" in human

    lines = cloud.ok("usage", "--csv", token=token).splitlines()
    assert len(lines) == 2
    records = list(csv.reader(io.StringIO("\n".join(lines))))
    assert tuple(records[0]) == USAGE_CSV_COLUMNS
    assert dict(zip(records[0], records[1], strict=True)) | {"started_at": ""} == {
        "job_id": job["id"], "job_name": "", "gpu_model": "H100", "gpus": "1",
        "seconds": str(row["seconds"]), "gpu_seconds": str(row["gpu_seconds"]),
        "card_seconds_from_packages": "0", "cost": row["cost"], "currency": "CNY",
        "started_at": "", "kind": "job", "ref_id": job["id"], "quantity": "0",
    }  # fmt: skip
    table = cloud.ok("usage", token=token)
    assert job["id"] in table
    assert f"total  1 job run(s), {row['gpu_seconds']} GPU-seconds, {row['cost']} CNY" in table
    assert cloud.json("usage", "--tenant", tenant) == cloud.json("usage", token=token)
    assert cloud.json("usage", "--from", "2999-01-01", token=token) == []
    assert cloud.json("usage", "--to", "2000-01-01T00:00:00Z", token=token) == []

    dry_runs_submit_nothing(cloud, token, wallet["balance"])

    verify = cloud.ok("admin", "ledger", "verify")
    assert verify.startswith("ledger ok: ")
    assert cloud.json("admin", "ledger", "verify")["ok"] is True


def test_a_running_job_burns_the_wallet(cloud: Cloud, priced: None, gate: Path) -> None:
    tenant, token = new_tenant(cloud)
    cloud.ok("admin", "topup", tenant, "20")
    job_id = cloud.json("run", *H100_JOB, "--max-duration", "15s", "--", "sh", "-c",
                        gated(gate), token=token)["id"]  # fmt: skip
    cloud.wait_state(job_id, "RUNNING")
    wallet = wait_for(
        lambda: (w := cloud.json("wallet", token=token))["running_allocations"] and w,
        "the wallet to see the running job",
    )
    assert wallet["burn_rate_per_hour"] == "3600.00"
    assert wallet["seconds_left"] is not None
    assert 0 <= wallet["seconds_left"] <= 20
    human = cloud.ok("wallet", token=token)
    assert "3600.00 CNY per hour (1 running allocation)" in human
    assert "not burning" not in human
    gate.touch()
    assert cloud.wait_state(job_id, "SUCCEEDED", "FAILED", "CANCELLED")["state"] == "SUCCEEDED"


def test_a_zero_balance_tenant_is_refused_at_submit(cloud: Cloud, priced: None) -> None:
    _, token = new_tenant(cloud, "broke")
    result = cloud.cli("run", *H100_JOB, "--", "true", token=token)
    assert result.returncode == 1
    line = failed(result)
    assert "top up" in line
    assert "0.00 CNY" in line
    assert cloud.json("ps", "--all", token=token) == []  # nothing was created
    dry = cloud.cli("run", "--dry-run", *H100_JOB, "--", "true", token=token)
    assert dry.returncode == 1
    assert "no: " in dry.stdout
    assert "top up" in failed(cloud.cli("package", "buy", "h100-100h", token=token))
    assert "no package offer" in failed(cloud.cli("package", "buy", "nope", token=token))


def test_a_job_without_a_gpu_type_pays_for_its_gpu(cloud: Cloud, priced: None) -> None:
    _, token = new_tenant(cloud, "untyped")
    refused = cloud.cli("run", "--gpus", "1", "--cpus", "0.1", "--", "true", token=token)
    assert refused.returncode == 1
    assert "top up" in refused.stderr
    assert cloud.json("ps", "--all", token=token) == []
    dry = cloud.cli("run", "--dry-run", "--gpus", "1", "--max-duration", "1h", "--", "true",
                    token=token)  # fmt: skip
    assert "3600.00" in dry.stdout


def test_member_cannot_do_operator_tasks(cloud: Cloud, priced: None) -> None:
    tenant, token = new_tenant(cloud)
    for command in (
        ("admin", "topup", tenant, "5"),
        ("admin", "credit", tenant, "5", "--reason", "nice try"),
        ("admin", "ledger", "verify"),
        ("admin", "config", "set", RUNWAY, "1"),
        ("price", "set", "H100", "0.01"),
    ):
        result = cloud.cli(*command, token=token)
        assert result.returncode == 1, command
        failed(result)
    assert cloud.json("wallet", token=token)["balance"] == "0.00"


def test_credits_need_a_reason(cloud: Cloud, priced: None) -> None:
    tenant, token = new_tenant(cloud)
    missing = cloud.cli("admin", "credit", tenant, "5")
    assert missing.returncode == 2
    assert "--reason" in failed(missing)
    out = cloud.json("admin", "credit", tenant, "5", "--reason", "lost node on job x")
    assert out["balance"] == "5.00"
    assert "balance 5.50 CNY" in cloud.ok("admin", "credit", tenant, "0.50", "--reason", "promo")
    assert "decimals" in failed(cloud.cli("admin", "topup", tenant, "0.001"))
    assert cloud.json("wallet", token=token)["balance"] == "5.50"


def test_admin_config_set_get_list(cloud: Cloud) -> None:
    with cloud.sdk() as api:
        original = api.get_config(RUNWAY).value
    try:
        assert cloud.ok("admin", "config", "set", RUNWAY, "60").strip() == f"{RUNWAY} = 60"
        got = cloud.json("admin", "config", "get", RUNWAY)
        assert (got["key"], got["value"]) == (RUNWAY, "60")
        assert got["help"]
        assert cloud.ok("admin", "config", "get", RUNWAY).startswith(f"{RUNWAY} = 60")
        listed = {s["key"]: s["value"] for s in cloud.json("admin", "config", "list")}
        assert listed[RUNWAY] == "60"
        assert "billing.currency" in listed
        assert RUNWAY in cloud.ok("admin", "config", "list")

        for command in (("set", "billing.nope", "1"), ("get", "billing.nope")):
            result = cloud.cli("admin", "config", *command)
            assert result.returncode == 2, command
            line = failed(result)
            assert "unknown setting 'billing.nope'" in line
            assert RUNWAY in line  # names the known keys
        bad = cloud.cli("admin", "config", "set", RUNWAY, "soon")
        assert bad.returncode == 2
        assert "whole number" in failed(bad)
        assert cloud.json("admin", "config", "get", RUNWAY)["value"] == "60"
    finally:
        with cloud.sdk() as api:
            api.set_config(RUNWAY, original)


def test_quotas_hold_jobs_and_show_in_limits_and_dry_runs(
    cloud: Cloud, priced: None, gate: Path
) -> None:
    tenant, token = new_tenant(cloud, "quota")
    cloud.ok("admin", "topup", tenant, "1000")
    assert "at most 1 H100 at once" in cloud.ok(
        "admin", "limit", "set", tenant, "gpus", "1", "--model", "h100"
    )
    cloud.json("admin", "limit", "set", tenant, "spend", "5000.00", "--per", "month")
    rows = cloud.json("limits", token=token)
    assert {(r["kind"], r["limit"]) for r in rows} == {
        ("gpus", "at most 1 H100 at once"),
        ("spend", "5000.00 CNY per month"),
    }
    assert "--per" in failed(
        cloud.cli("admin", "limit", "set", tenant, "spend", "1", "--per", "year")
    )
    assert "needs a period" in failed(cloud.cli("admin", "limit", "set", tenant, "spend", "1"))

    two = ("--gpus", "2", "--gpu-type", "H100", "--cpus", "0.1")
    result = cloud.cli("run", "--dry-run", *two, "--", "true", token=token)
    assert result.returncode == 1  # a dry run that would not be admitted says so in its status
    dry = result.stdout
    assert "quota     no: never: it needs 2 H100s at once" in dry
    assert "would not be admitted" in dry
    assert "can never run for this tenant" in failed(
        cloud.cli("run", *two, "--", "true", token=token)
    )

    first = cloud.json("run", *H100_JOB, "--", "sh", "-c", gated(gate), token=token)["id"]
    cloud.wait_state(first, "RUNNING")
    second = cloud.json("run", *H100_JOB, "--", "true", token=token)["id"]
    held = wait_for(
        lambda: (j := cloud.job(second, token))["reason"] == "WAITING_FOR_QUOTA" and j,
        "the second job to wait for the quota",
    )
    assert held["state"] == "PENDING" and "at most 1 H100 at once" in held["message"]
    assert "1 H100" in cloud.ok("limits", token=token)
    gate.touch()
    assert cloud.wait_state(second, "SUCCEEDED")["state"] == "SUCCEEDED"
    left = cloud.json("admin", "limit", "remove", tenant, "gpus", "--model", "H100")
    assert [r["kind"] for r in left] == ["spend"]
    assert "not found" in failed(cloud.cli("admin", "limit", "remove", tenant, "gpus"))
