"""Logging in to the screens: the cookie, each role's landing screen, the 403 page, the CSRF guard, logout."""

from fastapi.testclient import TestClient

from cloud.api.deps import SESSION_COOKIE
from tests.workflow.conftest import World


def login(world: World, key: str, next_path: str = "") -> TestClient:
    """A fresh client (own cookie jar) logged in through the form as one of estate A's users."""
    client = TestClient(world.app, follow_redirects=False)
    resp = client.post(
        "/login", data={"username": world.a.accounts[key][0], "password": "community-demo", "next": next_path}
    )
    assert resp.status_code == 303, resp.text
    return client


def test_the_login_form_sets_an_httponly_strict_cookie_and_lands_each_role_on_its_screen(world: World) -> None:
    anonymous = TestClient(world.app, follow_redirects=False)
    assert anonymous.get("/guard").headers["location"] == "/login?next=/guard"
    assert 'name="password"' in anonymous.get("/login").text
    resp = anonymous.post("/login", data={"username": world.a.accounts["guard"][0], "password": "community-demo"})
    assert resp.status_code == 303 and resp.headers["location"] == "/guard"
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    for key, home in (("tech1", "/tech"), ("resident", "/resident"), ("manager", "/manager"), ("desk", "/manager")):
        client = login(world, key)
        assert client.get("/").headers["location"] == home, key
        assert client.get(home).status_code == 200, key


def test_a_wrong_password_shows_the_form_again_with_the_reason(world: World) -> None:
    client = TestClient(world.app, follow_redirects=False)
    resp = client.post("/login", data={"username": world.a.accounts["guard"][0], "password": "not-it"})
    assert resp.status_code == 401 and "wrong username or password" in resp.text
    assert SESSION_COOKIE not in client.cookies


def test_another_roles_screen_is_a_403_page_and_next_only_goes_to_screens(world: World) -> None:
    resident = login(world, "resident")
    resp = resident.get("/guard")
    assert resp.status_code == 403 and "Not for your role" in resp.text and 'href="/resident"' in resp.text
    guard = login(world, "guard")
    assert guard.get("/guard").status_code == 200
    assert guard.get("/manager").status_code == 403
    # after login, `next` leads back to the screen asked for; never to another site
    assert login(world, "admin", "/guard").get("/login?next=/guard").headers["location"] == "/guard"
    evil = TestClient(world.app, follow_redirects=False)
    resp = evil.post(
        "/login",
        data={"username": world.a.accounts["guard"][0], "password": "community-demo", "next": "//evil.example/"},
    )
    assert resp.headers["location"] == "/guard"


def test_the_api_takes_the_cookie_and_refuses_a_cookie_post_without_the_csrf_header(world: World) -> None:
    guard = login(world, "guard")
    me = guard.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["role"] == "guard"
    refused = guard.post("/api/v1/me/password", json={"current_password": "community-demo", "new_password": "x" * 12})
    assert refused.status_code == 403
    assert "X-Requested-With" in refused.json()["error"]
    # nothing changed: the old password still logs in
    assert login(world, "guard").get("/api/v1/me").status_code == 200
    allowed = guard.post(
        "/api/v1/me/password",
        json={"current_password": "community-demo", "new_password": "a-new-pass-42"},
        headers={"X-Requested-With": "community-web"},
    )
    assert allowed.status_code == 204, allowed.text
    # the bearer header needs no such header (no browser sends it on its own)
    bearer = world.as_("desk")
    assert bearer.post("/api/v1/alarms/999999/ack", json={}).status_code == 404


def test_logout_clears_the_cookie(world: World) -> None:
    guard = login(world, "guard")
    resp = guard.post("/logout")
    assert resp.status_code == 303 and resp.headers["location"] == "/login"
    assert SESSION_COOKIE not in guard.cookies
    assert guard.get("/guard").status_code == 303
    assert guard.get("/api/v1/me").status_code == 401
