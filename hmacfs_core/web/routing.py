"""Where a request goes: the route families below the server's mount point.

Besides the XEP-0363 slot URLs (everything under ``server.base_path``), the
server answers ``/download/<path>``, ``POST /upload`` (form uploads) and, with
the adaptive engine on, ``/download/adaptive/<path>`` and ``POST
/upload/adaptive`` (and ``POST /upload/auto`` in testing mode), and everything
under ``[tus] path`` while tus is enabled. A route name is
what ``Transfer.route`` carries to the plugins and what the rollout rules decide
the arm by.
"""

from __future__ import annotations

from typing import cast

from attrs import frozen
from twisted.web.server import Request

#: Methods the read-only download routes answer; anything else is a slot request.
READ_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})


@frozen
class Route:
    """A route family and the URL prefix its paths are relative to.

    :ivar name: ``slot``, ``download``, ``download/adaptive``, ``upload``,
        ``upload/adaptive``, ``upload/auto`` or ``tus``.
    :ivar prefix: stripped (exactly once) from the raw path before the rest is
        read as an upload path: ``server.base_path`` for slots.
    """

    name: str
    prefix: str


def relative_raw_path(request: Request) -> bytes:
    """The still percent-encoded path below the resource's mount point.

    Twisted's ``postpath`` is already unquoted, which would hide an encoded
    ``/`` inside a segment; the raw ``request.path`` is split instead, dropping
    as many segments as the host site consumed on the way to this resource.
    """
    segments = request.path.split(b"/")[1:]
    return b"/" + b"/".join(segments[mount_depth(request) :])


def mount_depth(request: Request) -> int:
    """How many path segments the host site consumed on the way to hmacfs.

    Twisted types ``prepath`` as possibly None; ``Site`` sets it before any
    resource sees the request.
    """
    return len(cast(list[bytes], request.prepath))


#: Exact paths of the service routes, and the methods that reach them. A slot
#: path always has a directory, so none of these can be an upload's.
SERVICE_ROUTES = {
    b"/health": ("health", frozenset({b"GET", b"HEAD"})),
    b"/metrics": ("metrics", frozenset({b"GET", b"HEAD"})),
    b"/admin/rollback/reset": ("admin/rollback-reset", frozenset({b"POST"})),
}


#: Exact paths of the form upload routes, which take only ``POST``; a slot URL
#: never does, so a slot under a ``base_path`` of ``/upload/`` keeps its PUTs.
FORM_ROUTES = {
    b"/upload": "upload",
    b"/upload/adaptive": "upload/adaptive",
    b"/upload/auto": "upload/auto",
}


def route_for(
    request: Request,
    base_path: str,
    adaptive: bool,
    metrics_here: bool = True,
    testing: bool = False,
    tus_path: str | None = None,
) -> Route | None:
    """The route of ``request``, or None for a route that is switched off.

    ``/download/...`` is a download route only for reading methods, so a slot
    under a ``base_path`` of ``/download/`` still takes its PUTs.
    ``/upload/adaptive`` needs ``adaptive``, ``/upload/auto`` also ``testing``.
    Every method under ``tus_path`` (None while tus is off) is tus's.
    """
    raw = relative_raw_path(request)
    service = SERVICE_ROUTES.get(raw)
    if service is not None and request.method in service[1]:
        name = service[0]
        if name == "metrics" and not metrics_here:
            return None
        return Route(name, "/")

    form = FORM_ROUTES.get(raw)
    if form is not None and request.method == b"POST":
        if form == "upload/adaptive" and not adaptive:
            return None
        if form == "upload/auto" and not (adaptive and testing):
            return None
        return Route(form, "/")

    if tus_path is not None and (raw + b"/").startswith(tus_path.encode("utf-8")):
        return Route("tus", tus_path)

    if request.method in READ_METHODS:
        if raw.startswith(b"/download/adaptive/"):
            return (
                Route("download/adaptive", "/download/adaptive/") if adaptive else None
            )
        if raw.startswith(b"/download/"):
            return Route("download", "/download/")
    return Route("slot", base_path)


def request_route(request: Request, base_path: str) -> Route:
    """The route chosen for ``request``; a slot when nothing chose one."""
    route = getattr(request, "route", None)
    return route if isinstance(route, Route) else Route("slot", base_path)
