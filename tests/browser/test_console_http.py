"""The console's sign-in, session and CSRF rules over plain HTTP (no browser), in-process on
real SQLite and PostgreSQL with a manual clock; and tenancy on every console page."""

from __future__ import annotations

import hashlib
import html
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpucloud import console
from gpucloud.console import auth
from gpucloud.console.routing import ConsoleRoute
from gpucloud.console.sessions import SessionPolicy
from gpucloud.store.db import Database
from gpucloud.store.models import ConsoleSession, Job, Node, PriceVersionRow
from gpucloud.usage_csv import USAGE_CSV_COLUMNS
from tests.fakes import gpu_node
from tests.harness import Harness, make_harness

CSRF_FIELD = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([0-9a-f]{64})"')
POLICY = SessionPolicy()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def h(db: Database) -> Harness:
    return make_harness(db, nodes=[gpu_node("n0", gpus=4), gpu_node("n1", gpus=4)])


@pytest.fixture
def web(h: Harness) -> TestClient:
    return h.api()


def new_tenant(h: Harness, name: str) -> str:
    api = h.api()
    admin = bearer(h.admin_token)
    assert api.post("/v1/tenants", json={"name": name}, headers=admin).status_code == 201
    user = api.post("/v1/users", json={"name": f"{name}-user", "tenant": name}, headers=admin)
    assert user.status_code == 201, user.text
    topped = api.post("/v1/admin/topups", json={"tenant": name, "amount": "1000"}, headers=admin)
    assert topped.status_code == 201, topped.text
    token: str = user.json()["token"]
    return token


def sign_in(client: TestClient, token: str, next_path: str = "/") -> None:
    form = client.get("/login")
    assert form.status_code == 200
    found = CSRF_FIELD.search(form.text)
    assert found, "the sign-in form has no CSRF token"
    response = client.post(
        "/login", data={"token": token, "next": next_path, "csrf_token": found.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def csrf(client: TestClient, path: str = "/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF_META.search(page.text)
    assert found
    return found.group(1)


def signed_in(h: Harness, token: str) -> TestClient:
    client = h.api()
    sign_in(client, token)
    return client


def submit(client: TestClient, **fields: str) -> Any:
    form = {"command": "echo hi", "gpus": "1", "csrf_token": csrf(client, "/jobs/new"), **fields}
    return client.post("/jobs/new", data=form, follow_redirects=False)


def test_pages_need_a_session(web: TestClient) -> None:
    response = web.get("/ops/fleet?x=1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?why=required&next=%2Fops%2Ffleet%3Fx%3D1"
    page = web.get(response.headers["location"])
    assert "Sign in with an API token to use the console." in page.text
    assert 'name="next" value="/ops/fleet?x=1"' in page.text
    live = web.get("/?part=live", headers={"X-Console-Part": "1"})
    assert live.status_code == 401  # console.js reloads the page, which lands on sign-in


def test_sign_in_sets_an_httponly_samesite_cookie_whose_hash_alone_is_stored(
    h: Harness, web: TestClient
) -> None:
    form = web.get("/login")
    pre = form.headers["set-cookie"]
    assert "gpucloud_signin=" in pre and "HttpOnly" in pre and "Path=/login" in pre
    token = CSRF_FIELD.search(form.text)
    assert token
    response = web.post("/login", data={"token": h.admin_token, "csrf_token": token.group(1),
                                        "next": "/wallet"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/wallet"
    cookie = next(c for c in response.headers.get_list("set-cookie")
                  if c.startswith(f"{auth.SESSION_COOKIE}="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert f"Max-Age={POLICY.absolute_s}" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    secret = web.cookies[auth.SESSION_COOKIE]
    with h.ctx.db.read() as session:
        rows = list(session.scalars(select(ConsoleSession)))
    assert [r.secret_hash for r in rows] == [hashlib.sha256(secret.encode()).hexdigest()]
    assert web.get("/wallet").status_code == 200


def test_over_https_the_cookies_are_secure(h: Harness) -> None:
    from gpucloud.api.app import create_app
    from gpucloud.api.deps import Platform

    client = TestClient(create_app(Platform(h.ctx, None)), base_url="https://console.example")
    form = client.get("/login")
    assert "Secure" in form.headers["set-cookie"]
    token = CSRF_FIELD.search(form.text)
    assert token
    response = client.post("/login", data={"token": h.admin_token, "csrf_token": token.group(1)},
                           follow_redirects=False)
    cookie = next(c for c in response.headers.get_list("set-cookie")
                  if c.startswith(f"{auth.SESSION_COOKIE}="))
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_a_bad_token_is_refused_with_the_apis_reason(web: TestClient) -> None:
    form = web.get("/login")
    token = CSRF_FIELD.search(form.text)
    assert token
    response = web.post("/login", data={"token": "gpc_nope", "csrf_token": token.group(1)})
    assert response.status_code == 401
    assert "the API token is unknown or revoked" in response.text
    assert auth.SESSION_COOKIE not in web.cookies


def test_sign_in_without_its_csrf_token_is_refused(h: Harness, web: TestClient) -> None:
    web.get("/login")
    missing = web.post("/login", data={"token": h.admin_token})
    assert missing.status_code == 403
    assert "security token" in missing.text
    other = h.api()  # a token from another browser's sign-in form (login CSRF)
    theirs = CSRF_FIELD.search(other.get("/login").text)
    assert theirs
    forged = web.post("/login", data={"token": h.admin_token, "csrf_token": theirs.group(1)})
    assert forged.status_code == 403
    assert auth.SESSION_COOKIE not in web.cookies


def _unsafe_console_routes() -> list[tuple[str, str]]:
    found = []
    for module in console.PAGES:
        for route in module.router.routes:
            assert isinstance(route, APIRoute) and isinstance(route, ConsoleRoute), route
            for method in route.methods - {"GET", "HEAD"}:
                found.append((method, re.sub(r"\{[^}]+\}", "x", route.path)))
    return found


def test_every_change_without_the_csrf_token_is_refused(h: Harness, web: TestClient) -> None:
    sign_in(web, h.admin_token)
    routes = _unsafe_console_routes()
    assert ("POST", "/jobs/new") in routes and ("POST", "/ops/fleet/quarantine") in routes
    assert len(routes) >= 10
    for method, path in routes:
        for data in ({}, {"csrf_token": "0" * 64}):
            response = web.request(method, path, data=data)
            assert response.status_code == 403, (method, path, data, response.status_code)
    with h.ctx.db.read() as session:
        assert session.scalars(select(Job)).all() == []
        assert all(n.quarantined_at is None for n in session.scalars(select(Node)))


def test_a_change_from_another_origin_is_refused_even_with_the_token(
    h: Harness, web: TestClient
) -> None:
    sign_in(web, h.admin_token)
    token = csrf(web, "/ops/fleet")
    response = web.post("/ops/fleet/quarantine", data={"node": "n0", "reason": "x",
                                                       "csrf_token": token},
                        headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert "another site" in response.text
    same = web.post("/ops/fleet/quarantine", data={"node": "n0", "reason": "drill",
                                                   "csrf_token": token},
                    headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert same.status_code == 303
    with h.ctx.db.read() as session:
        node = session.get_one(Node, "n0")
        assert node.quarantined_at is not None and node.quarantine_reason == "drill"


def test_the_csrf_token_belongs_to_its_session(h: Harness) -> None:
    ann = signed_in(h, h.admin_token)
    other = signed_in(h, h.admin_token)
    theirs = csrf(other)
    assert csrf(ann) != theirs
    response = ann.post("/tokens", data={"name": "x", "csrf_token": theirs})
    assert response.status_code == 403


def test_submit_from_the_form_runs_the_job_once_even_if_sent_twice(h: Harness) -> None:
    alice = signed_in(h, new_tenant(h, "alice"))
    form = {"command": "echo hi", "gpus": "2", "gpu_type": "H100", "env": "A=1\n\nB=two",
            "name": "demo", "idempotency_key": "k-1", "csrf_token": csrf(alice, "/jobs/new")}
    first = alice.post("/jobs/new", data=form, follow_redirects=False)
    again = alice.post("/jobs/new", data=form, follow_redirects=False)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    job_id = first.headers["location"].rsplit("/", 1)[1]
    with h.ctx.db.read() as session:
        jobs = session.scalars(select(Job)).all()
    assert [j.id for j in jobs] == [job_id]
    assert jobs[0].spec["env"] == {"A": "1", "B": "two"}
    assert jobs[0].spec["command"] == ["/bin/sh", "-c", "echo hi"]
    h.settle()
    page = alice.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and "RUNNING" in page.text
    h.engine.exit(job_id, 0)
    h.settle()
    summary = alice.get(f"/jobs/{job_id}?part=summary").text
    assert "SUCCEEDED" in summary and "data-live-done" not in summary  # its last charge may come
    h.clock.advance(11)
    for part in ("summary", "timeline"):  # then the page stops polling
        assert "data-live-done" in alice.get(f"/jobs/{job_id}?part={part}").text


def test_the_job_page_says_why_a_job_waits_and_cancels_it(h: Harness) -> None:
    alice = signed_in(h, new_tenant(h, "alice"))
    ids = []
    for name in ("first", "second", "third"):
        created = submit(alice, name=name, gpus="4", gpu_type="H100")
        ids.append(created.headers["location"].rsplit("/", 1)[1])
    h.settle()
    page = alice.get(f"/jobs/{ids[2]}")
    assert "Why it is waiting:" in page.text
    with h.ctx.db.read() as session:
        waiting = session.get_one(Job, ids[2])
    assert waiting.state.value in ("PENDING", "QUEUED") and waiting.message
    assert html.escape(waiting.message) in page.text
    cancelled = alice.post(f"/jobs/{ids[2]}/cancel", data={"csrf_token": csrf(alice)},
                           follow_redirects=False)
    assert cancelled.status_code == 303 and cancelled.headers["location"] == f"/jobs/{ids[2]}"
    assert "CANCELLED" in alice.get(f"/jobs/{ids[2]}?part=summary").text
    assert "Cancel job" not in alice.get(f"/jobs/{ids[2]}").text


def test_form_errors_say_what_to_fix_and_keep_what_was_typed(h: Harness) -> None:
    alice = signed_in(h, new_tenant(h, "alice"))
    bad_env = submit(alice, env="NOT A PAIR", name="keep-me")
    assert bad_env.status_code == 422
    assert "env line 1: write KEY=VALUE" in bad_env.text
    assert 'value="keep-me"' in bad_env.text and 'aria-invalid="true"' in bad_env.text
    too_big = submit(alice, gpus="64")
    assert too_big.status_code == 422 and "can never fit on this fleet" in too_big.text
    reserved = submit(alice, env="CUDA_VISIBLE_DEVICES=0")
    assert reserved.status_code == 422 and "set by gpucloud" in reserved.text
    with h.ctx.db.read() as session:
        assert session.scalars(select(Job)).all() == []


def test_the_estimate_is_the_apis(h: Harness) -> None:
    token = new_tenant(h, "alice")
    alice = signed_in(h, token)
    body = {"command": ["true"], "gpus": 2, "gpu_type": "H100"}
    quoted = h.api().post("/v1/estimates", json=body, headers=bearer(token)).json()
    form = {"gpus": "2", "gpu_type": "H100", "csrf_token": csrf(alice, "/jobs/new")}
    part = alice.post("/jobs/new/estimate?part=estimate", data=form,
                      headers={"X-Console-Part": "1"})
    assert part.status_code == 200
    expected = f"{quoted['price_per_hour']['amount']} {quoted['price_per_hour']['currency']}"
    assert f'<span data-estimate="per-hour">{expected}</span>' in part.text
    assert "<html" not in part.text  # only the part


def test_sign_out_ends_the_session_for_good(h: Harness, web: TestClient) -> None:
    sign_in(web, h.admin_token)
    secret = web.cookies[auth.SESSION_COOKIE]
    out = web.post("/logout", data={"csrf_token": csrf(web)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    replay = h.api()
    replay.cookies.set(auth.SESSION_COOKIE, secret)
    response = replay.get("/", follow_redirects=False)
    assert response.status_code == 303 and "why=signed-out" in response.headers["location"]


def test_sessions_end_when_idle_and_after_their_lifetime(h: Harness, web: TestClient) -> None:
    sign_in(web, h.admin_token)
    h.clock.advance(POLICY.idle_s - 60)
    assert web.get("/", follow_redirects=False).status_code == 200  # use moves the idle clock
    h.clock.advance(POLICY.idle_s - 60)
    assert web.get("/", follow_redirects=False).status_code == 200
    h.clock.advance(POLICY.idle_s)
    idle = web.get("/", follow_redirects=False)
    assert idle.status_code == 303 and "why=idle" in idle.headers["location"]

    sign_in(web, h.admin_token)
    for _ in range(POLICY.absolute_s // (POLICY.idle_s // 2)):
        h.clock.advance(POLICY.idle_s // 2)
        response = web.get("/", follow_redirects=False)
    assert response.status_code == 303 and "why=expired" in response.headers["location"]
    assert "expired" in web.get(response.headers["location"]).text


def test_revoking_the_token_ends_the_sessions_made_with_it(h: Harness) -> None:
    token = new_tenant(h, "alice")
    alice = signed_in(h, token)
    mine = h.api().get("/v1/tokens", headers=bearer(token)).json()["items"][0]
    page = alice.get("/tokens")
    assert "this session" in page.text
    revoked = alice.post(f"/tokens/{mine['id']}/revoke", data={"csrf_token": csrf(alice)},
                         follow_redirects=False)
    assert revoked.status_code == 303
    after = alice.get("/tokens", follow_redirects=False)
    assert after.status_code == 303 and "why=revoked" in after.headers["location"]


def test_tokens_made_in_the_console_are_shown_once_and_work(h: Harness) -> None:
    alice = signed_in(h, new_tenant(h, "alice"))
    made = alice.post("/tokens", data={"name": "laptop", "expires_in_s": "86400",
                                       "csrf_token": csrf(alice, "/tokens")})
    assert made.status_code == 201
    secret = re.search(r'id="new-token"[^>]*value="(gpc_[^"]+)"', made.text)
    assert secret
    assert h.api().get("/v1/whoami", headers=bearer(secret.group(1))).json()["user"] == (
        "alice-user")
    assert secret.group(1) not in alice.get("/tokens").text


def test_another_tenants_objects_answer_404_and_operator_pages_403(h: Harness) -> None:
    alice_token = new_tenant(h, "alice")
    alice, bob = signed_in(h, alice_token), signed_in(h, new_tenant(h, "bob"))
    created = submit(alice, name="alices-job")
    job_id = created.headers["location"].rsplit("/", 1)[1]
    h.settle()
    token = csrf(bob)
    for method, path in [("GET", f"/jobs/{job_id}"), ("GET", f"/jobs/{job_id}?part=summary"),
                         ("GET", f"/jobs/{job_id}/log"), ("POST", f"/jobs/{job_id}/cancel")]:
        response = bob.request(method, path, data={"csrf_token": token} if method == "POST"
                               else None)
        assert response.status_code == 404, (method, path, response.status_code)
        assert "alices-job" not in response.text
    assert "alices-job" not in bob.get("/jobs").text
    assert "alices-job" not in bob.get("/").text
    assert "alices-job" in alice.get("/jobs").text
    for path in ("/ops/fleet", "/ops/tenants", "/ops/revenue", "/ops/prices"):
        response = bob.get(path)
        assert response.status_code == 403 and "for operators only" in response.text
    refused = bob.post("/ops/tenants/topup", data={"tenant": "bob", "amount": "1000000",
                                                   "csrf_token": token})
    assert refused.status_code == 403
    fleet = bob.get("/jobs/new")  # tenants see models, never who holds what
    assert job_id not in fleet.text
    with h.ctx.db.read() as session:
        assert session.get_one(Job, job_id).state.value == "RUNNING"


def test_operator_changes_go_through_the_apis_logic(h: Harness) -> None:
    new_tenant(h, "alice")
    admin = signed_in(h, h.admin_token)
    token = csrf(admin, "/ops/fleet")
    assert admin.post("/ops/fleet/quarantine", data={"node": "n1", "reason": "",
                                                     "csrf_token": token}).status_code == 422
    missing = admin.post("/ops/fleet/quarantine", data={"node": "nx", "reason": "r",
                                                        "csrf_token": token})
    assert missing.status_code == 404 and "node 'nx' not found" in html.unescape(missing.text)
    admin.post("/ops/fleet/quarantine", data={"node": "n1", "reason": "fans",
                                              "csrf_token": token})
    assert "4 <span class=\"unit\">of 8</span>" in admin.get("/ops/fleet?part=grid").text
    admin.post("/ops/fleet/return", data={"node": "n1", "csrf_token": token})
    assert "8 <span class=\"unit\">of 8</span>" in admin.get("/ops/fleet?part=grid").text

    topped = admin.post("/ops/tenants/topup", data={"tenant": "alice", "amount": "12.50",
                                                    "key": "k1", "csrf_token": token})
    assert topped.status_code == 200 and "1012.50 CNY" in topped.text
    admin.post("/ops/tenants/topup", data={"tenant": "alice", "amount": "12.50", "key": "k1",
                                           "csrf_token": token})  # the same form again
    wallet = h.api().get("/v1/wallet?tenant=alice", headers=bearer(h.admin_token)).json()
    assert wallet["balance"] == "1012.50"
    bad = admin.post("/ops/tenants/topup", data={"tenant": "alice", "amount": "1.005",
                                                 "csrf_token": token})
    assert bad.status_code == 422 and "1.005" in bad.text

    priced = admin.post("/ops/prices", data={"model": "H100", "gpu_hour": "30.00",
                                             "csrf_token": token})
    assert priced.status_code == 200 and "H100 at 30.00 CNY per GPU-hour" in priced.text
    with h.ctx.db.read() as session:
        assert len(session.scalars(select(PriceVersionRow)).all()) == 2


def test_the_usage_csv_download(h: Harness) -> None:
    alice = signed_in(h, new_tenant(h, "alice"))
    created = submit(alice)
    job_id = created.headers["location"].rsplit("/", 1)[1]
    h.settle()
    h.clock.advance(30)
    h.settle()
    response = alice.get("/wallet/usage.csv?days=7")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    lines = response.text.splitlines()
    assert lines[0] == ",".join(USAGE_CSV_COLUMNS)
    assert len(lines) == 2 and lines[1].startswith(f"{job_id},")


def test_pages_carry_security_headers_and_are_not_cached(h: Harness, web: TestClient) -> None:
    sign_in(web, h.admin_token)
    for path in ("/", "/login", "/jobs", "/wallet/usage.csv"):
        response = web.get(path)
        assert response.headers["cache-control"] == "no-store", path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        assert response.headers["x-frame-options"] == "DENY", path
    assert web.get("/static/console.js").status_code == 200


def test_after_sign_in_only_a_local_path_is_followed(h: Harness) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        client = h.api()
        form = client.get("/login")
        token = CSRF_FIELD.search(form.text)
        assert token
        response = client.post("/login", data={"token": h.admin_token, "next": target,
                                                "csrf_token": token.group(1)},
                               follow_redirects=False)
        assert response.headers["location"] == "/", target


def test_the_api_is_unchanged_beside_the_console(h: Harness, web: TestClient) -> None:
    missing = web.get("/v1/jobs", headers=bearer("gpc_nope"))
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    paths = web.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/login" not in paths  # the console is not part of the API
