"""Ask a real XMPP server for upload slots (XEP-0363), as a chat client does.

slixmpp logs in over plain TCP on loopback and sends the bare ``<request/>`` IQ to
the upload service. Its ``xep_0363`` plugin is not used: it would also bring in
aiohttp for the HTTP part, which the interop tests do with ``http.client`` so that
they control every byte of the request.

The whole XMPP exchange runs in its own thread and event loop under one deadline,
so a server that never answers fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import slixmpp
from attrs import frozen
from slixmpp.xmlstream import ET

UPLOAD_NS = "urn:xmpp:http:upload:0"


@frozen
class SlotRequest:
    """What a client tells the upload service about the file it wants to send."""

    filename: str
    size: int
    content_type: str | None


@frozen
class Slot:
    """The service's answer: where to PUT, where others GET, and extra headers."""

    request: SlotRequest
    put_url: str
    get_url: str
    put_headers: dict[str, str]


def request_slots(
    address: tuple[str, int],
    jid: str,
    password: str,
    service: str,
    requests: Sequence[SlotRequest],
    timeout: float = 15.0,
) -> list[Slot]:
    """
    Log in as ``jid`` at ``address`` and request one slot per item of ``requests``.

    :param address: the server's client-to-server host and port.
    :param service: the JID of the upload component, e.g. ``upload.localhost``.
    :param timeout: seconds for the whole exchange, login included.
    :raises AssertionError: if the exchange does not finish in time.
    :raises slixmpp.exceptions.IqError: if the service refuses a request.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["slots"] = asyncio.run(
                asyncio.wait_for(
                    _exchange(address, jid, password, service, requests), timeout
                )
            )
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="xmpp-client", daemon=True)
    worker.start()
    worker.join(timeout + 5)

    if worker.is_alive():
        raise AssertionError(f"XMPP client still running after {timeout} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["slots"]  # type: ignore[return-value]


async def _exchange(
    address: tuple[str, int],
    jid: str,
    password: str,
    service: str,
    requests: Sequence[SlotRequest],
) -> list[Slot]:
    client = _PlainClient(jid, password)
    try:
        client.connect(*address)
        await client.session_started

        slots = []
        for request in requests:
            answer = await client.upload_request(service, request).send(timeout=10)
            slots.append(_read_slot(request, answer.xml))
        return slots
    finally:
        client.cancel_connection_attempt()
        client.abort()


class _PlainClient(slixmpp.ClientXMPP):
    """
    A client that logs in without TLS, as only a throwaway server on loopback
    allows: SCRAM keeps the password off the wire all the same.
    """

    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        self.plugin["feature_mechanisms"].unencrypted_scram = True

        self.session_started: asyncio.Future[None] = self.loop.create_future()
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_auth", self._on_failure)
        self.add_event_handler("connection_failed", self._on_failure)
        self.add_event_handler("disconnected", self._on_failure)

    def upload_request(self, service: str, request: SlotRequest) -> slixmpp.Iq:
        iq = self.make_iq_get(ito=service)
        attributes = {"filename": request.filename, "size": str(request.size)}
        if request.content_type is not None:
            attributes["content-type"] = request.content_type
        iq.append(ET.Element(f"{{{UPLOAD_NS}}}request", attributes))
        return iq

    def _on_session_start(self, _event: object) -> None:
        if not self.session_started.done():
            self.session_started.set_result(None)

    def _on_failure(self, event: object) -> None:
        if not self.session_started.done():
            self.session_started.set_exception(
                AssertionError(f"XMPP login failed: {event!r}")
            )


def _read_slot(request: SlotRequest, iq: ET.Element) -> Slot:
    slot = iq.find(f"{{{UPLOAD_NS}}}slot")
    assert slot is not None, f"no slot in the answer: {ET.tostring(iq)!r}"
    put = slot.find(f"{{{UPLOAD_NS}}}put")
    get = slot.find(f"{{{UPLOAD_NS}}}get")
    assert put is not None and get is not None, ET.tostring(slot)

    headers = {
        header.get("name", ""): header.text or ""
        for header in put.findall(f"{{{UPLOAD_NS}}}header")
    }
    return Slot(
        request=request,
        put_url=put.get("url", ""),
        get_url=get.get("url", ""),
        put_headers=headers,
    )
