"""The web screens: login and logout, each role's screen, rendered from Jinja2 templates.

A page is a shell (layout, labels, the user's name); its data comes from the JSON API, fetched by
the page's script with the session cookie (static/js/web.js). Logging in here obtains the same
token as POST /api/v1/auth/token and keeps it in an HttpOnly, SameSite=Strict cookie, which the API
accepts in place of the bearer header (cloud.api.deps). How to add a screen: docs/web.md.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import OAuth2PasswordRequestForm
from fastapi.templating import Jinja2Templates

from cloud.api.deps import SESSION_COOKIE, ClockDep, Conn, principal_of_token
from cloud.api.errors import ApiError
from cloud.api.routers import auth
from cloud.domain.access import Principal, Role

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Screen:
    """One screen: its path, title, template, and the roles that may open it."""

    path: str
    title: str
    template: str
    roles: frozenset[Role]


#: every screen; a role's own screen is HOME[role].
SCREENS: dict[str, Screen] = {
    s.path: s
    for s in (
        Screen("/guard", "Guard console", "guard.html", frozenset({Role.GUARD, Role.ADMIN})),
        Screen("/tech", "My tickets", "tech.html", frozenset({Role.TECHNICIAN, Role.ADMIN})),
        Screen("/resident", "My home", "resident.html", frozenset({Role.RESIDENT})),
        Screen("/manager", "Estate overview", "manager.html", frozenset({Role.MANAGER, Role.SERVICE_DESK, Role.ADMIN})),
    )
}
HOME: dict[Role, str] = {
    Role.GUARD: "/guard",
    Role.TECHNICIAN: "/tech",
    Role.RESIDENT: "/resident",
    Role.MANAGER: "/manager",
    Role.SERVICE_DESK: "/manager",
    Role.ADMIN: "/manager",
}


def page_user(request: Request, conn: Conn, clock: ClockDep) -> Principal | None:
    """The logged-in user of a page request (from the session cookie), or None."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return principal_of_token(request, conn, clock, token)
    except ApiError:
        return None


PageUser = Annotated[Principal | None, Depends(page_user)]


def _screens_of(who: Principal) -> list[Screen]:
    return [s for s in SCREENS.values() if who.role in s.roles]


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def _render(request: Request, template: str, status: int = 200, **context: object) -> HTMLResponse:
    return templates.TemplateResponse(request, template, context, status_code=status)


@router.get("/")
def root(who: PageUser) -> RedirectResponse:
    return RedirectResponse(HOME[who.role] if who else "/login", status_code=303)


@router.get("/login")
def login_page(request: Request, who: PageUser, next: str = "") -> Response:
    if who is not None:
        return RedirectResponse(_safe_next(next) or HOME[who.role], status_code=303)
    return _render(request, "login.html", next=_safe_next(next), error=None)


def _safe_next(target: str) -> str:
    """Only a path of this site (no `//host`, no scheme): an open redirect would help phishing."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and target in SCREENS:
        return target
    return ""


@router.post("/login")
def login_submit(
    request: Request,
    conn: Conn,
    clock: ClockDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """The login form: the same check and audit as POST /api/v1/auth/token; the token goes into the cookie."""
    form = OAuth2PasswordRequestForm(username=username, password=password)
    try:
        token = auth.login(form, request, conn, clock)
    except ApiError as exc:
        return _render(request, "login.html", status=exc.status, next=_safe_next(next), error=exc.reason)
    role = Role(token.role)
    target = _safe_next(next)
    if not target or role not in SCREENS[target].roles:
        target = HOME[role]
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        token.access_token,
        max_age=token.expires_in,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.app.state.settings.web_cookie_secure,
    )
    return resp


@router.post("/logout")
def logout() -> RedirectResponse:
    """Forget the cookie (the token itself runs out by its expiry; a password change ends it at once)."""
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return resp


def _screen_route(screen: Screen) -> None:
    def show(request: Request, who: PageUser) -> Response:
        if who is None:
            return _to_login(request)
        if who.role not in screen.roles:
            return _render(request, "forbidden.html", status=403, who=who, screen=screen, home=HOME[who.role])
        return _render(request, screen.template, who=who, screen=screen, screens=_screens_of(who))

    show.__name__ = "screen_" + screen.path.strip("/")
    router.add_api_route(screen.path, show, methods=["GET"], response_class=HTMLResponse)


for _screen in SCREENS.values():
    _screen_route(_screen)
