"""The frame every page sits in: the URL, the navigation bar and the page slot."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from dash import dcc, html

from layouts import ids


@dataclass(frozen=True)
class Route:
    """Where a URL leads: a page name and its arguments."""

    page: str  # wall | site | order | tradeoffs | pipeline | missing
    arg: str | None = None
    kiosk: bool = False
    rotate_s: int = 0


def parse_route(pathname: str | None, search: str | None) -> Route:
    """Return the page a path and query string ask for."""
    query = parse_qs((search or "").lstrip("?"))
    kiosk = query.get("kiosk", ["0"])[0].lower() in ("1", "true", "yes")
    try:
        rotate_s = max(0, min(3600, int(query.get("rotate", ["0"])[0])))
    except ValueError:
        rotate_s = 0
    parts = [part for part in (pathname or "/").split("/") if part]
    if not parts:
        return Route("wall", None, kiosk, rotate_s)
    if parts == ["tradeoffs"]:
        return Route("tradeoffs")
    if parts == ["pipeline"]:
        return Route("pipeline")
    if len(parts) == 2 and parts[0] == "sites":
        return Route("site", parts[1])
    if len(parts) == 2 and parts[0] == "orders":
        return Route("order", parts[1])
    return Route("missing", "/" + "/".join(parts))


NAV_LINKS = (("Wall screen", "/"), ("Trade-offs", "/tradeoffs"), ("Pipeline", "/pipeline"))


def nav(site_ids: list[str] | None = None) -> html.Nav:
    """Build the navigation bar: pages, then one link per site."""
    links = [dcc.Link(label, href=href, className="nav-link") for label, href in NAV_LINKS]
    sites = [dcc.Link(site, href=f"/sites/{site}", className="nav-link nav-site") for site in site_ids or []]
    return html.Nav(
        [html.Span("Last-mile control tower", className="nav-brand"), *links, html.Span(sites, className="nav-sites")],
        className="nav-bar",
    )


def frame() -> html.Div:
    """Build the app's layout: the URL, the navigation and the page slot the router fills."""
    return html.Div(
        [
            dcc.Location(id=ids.LOCATION, refresh="callback-nav"),
            html.Div(id=ids.NAV),
            html.Main(id=ids.PAGE),
        ]
    )


def banner(text: str, kind: str = "bad") -> html.Div:
    """Build a full-width message: a store down, stale figures."""
    return html.Div(text, className=f"banner banner-{kind}")


def empty(text: str) -> html.Div:
    """Build the placeholder that says what is missing."""
    return html.Div(text, className="empty")


def missing(path: str) -> html.Div:
    """Build the page for an unknown path."""
    return html.Div(
        [html.H1("Nothing here"), empty(f"No page at {path}."), dcc.Link("Back to the wall screen", href="/")],
        className="page",
    )


# AG Grid's Theming API (AG Grid 33+): a dark Alpine that matches the app's palette.
GRID_THEME = {
    "function": "themeAlpine.withParams({backgroundColor: '#171b24', foregroundColor: '#e8eaf0', "
    "headerBackgroundColor: '#1f2532', accentColor: '#8fb8ff', fontSize: 15, "
    "oddRowBackgroundColor: '#1a1f2a', borderColor: '#2a3140'})"
}
