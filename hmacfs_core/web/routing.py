"""Where a request goes: the route families below the server's mount point.

Besides the XEP-0363 slot URLs (everything under ``server.base_path``), the
server answers ``/download/<path>`` and, with the adaptive engine on,
``/download/adaptive/<path>``. A route name is what ``Transfer.route`` carries
to the plugins and what the rollout rules decide the arm by.
"""

from __future__ import annotations

from attrs import frozen
from twisted.web.server import Request

#: Methods the read-only download routes answer; anything else is a slot request.
READ_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})


@frozen
class Route:
    """A route family and the URL prefix its paths are relative to.

    :ivar name: ``slot``, ``download`` or ``download/adaptive``.
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
    return b"/" + b"/".join(segments[len(request.prepath) :])


#: Exact paths of the service routes, and the methods that reach them. A slot
#: path always has a directory, so none of these can be an upload's.
SERVICE_ROUTES = {
    b"/health": ("health", frozenset({b"GET", b"HEAD"})),
    b"/metrics": ("metrics", frozenset({b"GET", b"HEAD"})),
    b"/admin/rollback/reset": ("admin/rollback-reset", frozenset({b"POST"})),
}


def route_for(
    request: Request, base_path: str, adaptive: bool, metrics_here: bool = True
) -> Route | None:
    """The route of ``request``, or None for a route that is switched off.

    ``/download/...`` is a download route only for reading methods, so a slot
    under a ``base_path`` of ``/download/`` still takes its PUTs.
    """
    raw = relative_raw_path(request)
    service = SERVICE_ROUTES.get(raw)
    if service is not None and request.method in service[1]:
        name = service[0]
        if name == "metrics" and not metrics_here:
            return None
        return Route(name, "/")

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
