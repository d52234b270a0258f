"""The built-in ``client_classification`` strategy: tell phones from computers from
servers, and run each one's transfers the way its ``[client_optimization]``
strategy table says.

A phone on a radio link, a desktop on a home line and a server in a datacenter
want different buffers and patience, and none of them says which it is. Three
kinds of evidence are weighed, each switched by its own key:

- ``user_agent_analysis``: the User-Agent names the app or HTTP stack. It is
  the surest sign and outweighs the two others together.
- ``performance_classification``: the throughput the same client reached in
  earlier transfers. A whole transfer says more than one RTT reading, so it
  outweighs the fingerprint.
- ``connection_fingerprinting``: the kernel's RTT and its variance when the
  headers arrived. Radio links are slow and jittery; a round trip under 2 ms
  means the client sits in the same datacenter.

With ``learning_enabled`` the verdicts are remembered per client (address and
User-Agent) as a score per class, an exponential moving average that moves by
``adaptation_speed`` per transfer, so one odd reading does not flip a client
that has behaved the same way many times.
"""

from __future__ import annotations

import re
import types
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from attrs import define, field, frozen

from hmacfs_core import Outcome, TcpStats, Transfer, TransferPlan, hookimpl
from hmacfs_core.config import ClientOptimizationConfig, ClientStrategy
from hmacfs_core.transfer import CLIENT_CLASSES

PLUGIN_NAME = "client_classification"


@frozen
class UserAgentRule:
    """One row of :data:`USER_AGENT_RULES`.

    :ivar client_class: what a matching client is.
    :ivar kind: what the row recognises, for the notes of a transfer.
    :ivar pattern: searched for anywhere in the User-Agent, ignoring case.
    """

    client_class: str
    kind: str
    pattern: re.Pattern[str]


def _rule(client_class: str, kind: str, pattern: str) -> UserAgentRule:
    return UserAgentRule(client_class, kind, re.compile(pattern, re.IGNORECASE))


#: What a User-Agent says about its client; the first matching row wins. Named XMPP
#: apps come first because they run on stacks (okhttp, CFNetwork) that would
#: otherwise speak for them, and mobile markers come before desktop browsers
#: because a phone's browser also names its engine ("Safari", "Chrome").
USER_AGENT_RULES = (
    _rule(
        "mobile",
        "XMPP app for phones",
        r"\b(?:Conversations|Quicksy|Monal|Siskin|Cheogram|blabber|ChatSecure)",
    ),
    _rule(
        "desktop",
        "XMPP app for computers",
        r"\b(?:Dino|Gajim|Psi\+?|Swift|Beagle ?IM)(?:\b|/)",
    ),
    _rule("mobile", "Android HTTP stack", r"\b(?:Android|okhttp|Dalvik)\b"),
    _rule("mobile", "iOS HTTP stack", r"\b(?:iPhone|iPad|iPod|iOS|CFNetwork)\b"),
    _rule("mobile", "mobile browser", r"\bMobile\b"),
    _rule(
        "desktop",
        "desktop browser",
        r"\((?:Windows|Macintosh|X11|Linux|CrOS)\b[^)]*\)"
        r".*\b(?:Firefox|Chrome|Chromium|Safari|Edg|OPR)/",
    ),
    _rule(
        "server",
        "HTTP tool or library",
        r"\b(?:curl|Wget|python-requests|python-httpx|aiohttp|Python-urllib"
        r"|Go-http-client|Java|Apache-HttpClient|node-fetch|undici|axios"
        r"|libwww-perl|reqwest|Ruby)\b",
    ),
    _rule(
        "server",
        "XMPP server or library",
        r"\b(?:slixmpp|Prosody|ejabberd|Openfire|Tigase|MongooseIM|Metronome)\b",
    ),
)

#: How far one transfer moves a client's remembered scores, per adaptation speed.
ADAPTATION_WEIGHTS = types.MappingProxyType({"slow": 0.1, "medium": 0.3, "fast": 0.6})

#: What each kind of evidence weighs. The User-Agent outweighs the two others
#: together: it names the client, where they only describe its link.
USER_AGENT_WEIGHT = 1.0
PERFORMANCE_WEIGHT = 0.5
FINGERPRINT_WEIGHT = 0.4

#: A round trip above this is a radio link or another continent (seconds).
MOBILE_RTT = 0.060
#: Jitter above this, and above half the RTT, is a radio link (seconds).
MOBILE_RTT_VARIANCE = 0.010
#: A round trip below this never crosses a radio link: same datacenter (seconds).
DATACENTER_RTT = 0.002
#: How much each reading counts toward the fingerprint's verdict (0..1).
HIGH_RTT_SCORE = 0.6
JITTER_SCORE = 0.4
DATACENTER_SCORE = 0.8
#: A fingerprint this sure of another class than the User-Agent's is noted.
STRONG_FINGERPRINT = 0.75

#: Average throughputs (bytes/s) below which a client behaves like a phone, and
#: above which like a server; in between, like a desktop.
MOBILE_THROUGHPUT = 1_000_000
SERVER_THROUGHPUT = 50_000_000
#: Transfers smaller than this are over before TCP's slow start is, so their
#: throughput says more about the RTT than the link; they are not learnt from.
MEASURABLE_BYTES = 256 * 1024

#: How many clients are remembered; the least recently seen is forgotten first.
MAX_CLIENTS = 10_000
#: Characters of the User-Agent kept in a client's key: the header is the
#: client's to choose, and memory must stay bounded by MAX_CLIENTS alone.
KEY_USER_AGENT_LENGTH = 256

#: Socket buffers of a server-class transfer, as a multiple of its strategy's
#: ``buffer_size``.
SERVER_SOCKET_BUFFER_FACTOR = 4

ClientKey = tuple[str, str]


@frozen
class Evidence:
    """What one transfer showed about its client, kept in ``transfer.notes``.

    :ivar user_agent: the class the User-Agent names, or None.
    :ivar user_agent_kind: which row of :data:`USER_AGENT_RULES` matched.
    :ivar fingerprint: the fingerprint's score per class (0..1).
    :ivar performance: the class the client's past throughput suggests, or None.
    :ivar scores: all of it weighed together, summing to 1 (empty: no evidence).
    :ivar contradiction: why the fingerprint strongly disagrees with the
        User-Agent, or None.
    """

    user_agent: str | None
    user_agent_kind: str | None
    fingerprint: Mapping[str, float]
    performance: str | None
    scores: Mapping[str, float]
    contradiction: str | None


@define
class ClientRecord:
    """What is remembered about one client between its transfers.

    :ivar scores: the moving average of its evidence, per class.
    :ivar throughput: the moving average of its throughput, bytes/s.
    """

    scores: dict[str, float] = field(factory=dict)
    throughput: float | None = None


@define
class ClientClassification:
    """Classify clients and apply their class's strategy to the plan.

    :ivar options: the ``[client_optimization]`` section in force.
    :ivar max_clients: how many clients to remember.
    """

    options: ClientOptimizationConfig = field(factory=ClientOptimizationConfig)
    max_clients: int = MAX_CLIENTS
    _clients: OrderedDict[ClientKey, ClientRecord] = field(factory=OrderedDict)
    _user_agents: dict[str, tuple[str | None, str | None]] = field(factory=dict)

    @hookimpl
    def hmacfs_configure(self, app: Any, settings: Mapping[str, Any]) -> None:
        """Take ``[client_optimization]``; what was learnt survives a reload.

        :raises ValueError: for a ``[plugins.client_classification]`` table, since
            every setting of this plugin lives in ``[client_optimization]``.
        """
        if settings:
            raise ValueError(
                "takes no [plugins.client_classification] settings; "
                "set its keys in [client_optimization]"
            )
        self.options = app.config.client_optimization

    @hookimpl(tryfirst=True)
    def hmacfs_classify_client(self, transfer: Transfer) -> str | None:
        """Weigh the evidence, blend it with what is remembered, name the class.

        The evidence is stored in ``transfer.notes["client_classification"]``.

        :return: ``"mobile"``, ``"desktop"`` or ``"server"``, or None when
            nothing is known about the client.
        """
        evidence = self.gather_evidence(transfer)
        transfer.notes[PLUGIN_NAME] = evidence

        if not self.options.learning_enabled:
            return _strongest(evidence.scores)

        key = _client_key(transfer)
        record = self._recall(key, create=bool(evidence.scores))
        if record is None:
            return None
        if evidence.scores:
            record.scores = _moving_average(
                record.scores, evidence.scores, self.adaptation_weight
            )
        return _strongest(record.scores)

    @hookimpl(tryfirst=True)
    def hmacfs_plan_transfer(self, transfer: Transfer, plan: TransferPlan) -> None:
        """Apply the strategy of the transfer's class, before the other plugins.

        Socket buffers are set for servers only. A server pushes a large file
        over a fast link whose bandwidth-delay product outgrows the kernel's
        starting buffer, so a fixed buffer of four strategy buffers lets the TCP
        window open at once. A phone's link changes speed and RTT under it: the
        kernel's auto-tuning, which a fixed ``SO_RCVBUF`` would switch off,
        follows that better, and a big fixed buffer on a slow link only queues
        data the phone cannot take yet. Desktops keep auto-tuning too.
        """
        if not self.options.enabled:
            return
        strategy = self.strategy_for(transfer.client_class)
        if strategy is None:
            return

        if transfer.direction == "upload":
            plan.read_size = strategy.buffer_size
            plan.write_buffer_size = strategy.buffer_size
        else:
            plan.chunk_size = strategy.chunk_size
        plan.idle_timeout *= strategy.timeout_multiplier
        plan.retry_after *= strategy.retry_multiplier

        if transfer.client_class == "server":
            # The core lets socket buffers reach 4 x max_buffer_size, so the
            # default server strategy's 4 MiB survives the clamp.
            socket_buffer = SERVER_SOCKET_BUFFER_FACTOR * strategy.buffer_size
            plan.socket_receive_buffer = socket_buffer
            plan.socket_send_buffer = socket_buffer

    @hookimpl
    def hmacfs_transfer_finished(self, transfer: Transfer, outcome: Outcome) -> None:
        """Learn the client's throughput, for ``performance_classification``.

        Failed and small transfers are skipped: their throughput measures the
        failure or the RTT, not the link.
        """
        if not self.options.performance_classification:
            return
        if not outcome.succeeded or outcome.bytes < MEASURABLE_BYTES:
            return

        record = self._recall(_client_key(transfer), create=True)
        assert record is not None
        if record.throughput is None:
            record.throughput = outcome.throughput
        else:
            weight = self.adaptation_weight
            record.throughput += weight * (outcome.throughput - record.throughput)

    @property
    def adaptation_weight(self) -> float:
        """How far one transfer moves what is remembered of its client."""
        return ADAPTATION_WEIGHTS[self.options.adaptation_speed]

    def strategy_for(self, client_class: str | None) -> ClientStrategy | None:
        """The ``strategy_<class>`` table, or None for a class without one."""
        if client_class not in CLIENT_CLASSES:
            return None
        strategy: ClientStrategy = getattr(self.options, f"strategy_{client_class}")
        return strategy

    def _match_user_agent(self, user_agent: str) -> tuple[str | None, str | None]:
        """:func:`match_user_agent`, remembered: a server sees the same few
        User-Agents over and over, and the rules are a dozen regexes."""
        known = self._user_agents.get(user_agent)
        if known is None:
            known = match_user_agent(user_agent)
            if len(self._user_agents) >= self.max_clients:
                self._user_agents.clear()
            self._user_agents[user_agent] = known
        return known

    def gather_evidence(self, transfer: Transfer) -> Evidence:
        """Everything the enabled kinds of evidence say about this transfer."""
        options = self.options
        weights: dict[str, float] = {}

        user_agent, kind = (
            self._match_user_agent(transfer.user_agent)
            if options.user_agent_analysis
            else (None, None)
        )
        if user_agent is not None:
            _add(weights, user_agent, USER_AGENT_WEIGHT)

        fingerprint: dict[str, float] = {}
        if options.connection_fingerprinting and transfer.tcp is not None:
            fingerprint = fingerprint_connection(transfer.tcp)
        for client_class, score in fingerprint.items():
            _add(weights, client_class, FINGERPRINT_WEIGHT * score)

        performance = None
        if options.performance_classification:
            record = self._clients.get(_client_key(transfer))
            if record is not None and record.throughput is not None:
                performance = class_for_throughput(record.throughput)
                _add(weights, performance, PERFORMANCE_WEIGHT)

        total = sum(weights.values())
        return Evidence(
            user_agent=user_agent,
            user_agent_kind=kind,
            fingerprint=fingerprint,
            performance=performance,
            scores={name: weight / total for name, weight in weights.items()},
            contradiction=_contradiction(user_agent, fingerprint, transfer.tcp),
        )

    def remembered(self, transfer: Transfer) -> ClientRecord | None:
        """What is remembered of this transfer's client (for tests and tools)."""
        return self._clients.get(_client_key(transfer))

    def _recall(self, key: ClientKey, create: bool) -> ClientRecord | None:
        record = self._clients.get(key)
        if record is not None:
            self._clients.move_to_end(key)
            return record
        if not create:
            return None

        record = self._clients[key] = ClientRecord()
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return record


def match_user_agent(user_agent: str) -> tuple[str | None, str | None]:
    """The class a User-Agent names and the kind of client it matched as.

    :return: ``(None, None)`` for an empty or unknown User-Agent.
    """
    for rule in USER_AGENT_RULES:
        if rule.pattern.search(user_agent):
            return rule.client_class, rule.kind
    return None, None


def fingerprint_connection(tcp: TcpStats) -> dict[str, float]:
    """What the connection's round trips say, as a score per class (0..1).

    A high RTT and a jittery one each point to a phone, and both together are
    sure; a round trip under :data:`DATACENTER_RTT` points to a server. A zero
    RTT is the kernel having measured nothing yet, and says nothing.
    """
    scores: dict[str, float] = {}
    if tcp.rtt <= 0:
        return scores

    if tcp.rtt > MOBILE_RTT:
        _add(scores, "mobile", HIGH_RTT_SCORE)
    if tcp.rtt_variance > max(tcp.rtt / 2, MOBILE_RTT_VARIANCE):
        _add(scores, "mobile", JITTER_SCORE)
    if tcp.rtt < DATACENTER_RTT:
        _add(scores, "server", DATACENTER_SCORE)
    return scores


def class_for_throughput(throughput: float) -> str:
    """The class whose clients usually reach ``throughput`` (bytes/s)."""
    if throughput < MOBILE_THROUGHPUT:
        return "mobile"
    if throughput > SERVER_THROUGHPUT:
        return "server"
    return "desktop"


def _contradiction(
    user_agent: str | None, fingerprint: Mapping[str, float], tcp: TcpStats | None
) -> str | None:
    """Why the fingerprint strongly disagrees with the User-Agent, if it does.

    The User-Agent still decides; the note is for whoever wonders why a client
    got the strategy it got (an emulator in a datacenter, a script on a phone).
    """
    if user_agent is None or not fingerprint or tcp is None:
        return None
    fingerprint_class = _strongest(fingerprint)
    if fingerprint_class is None or fingerprint_class == user_agent:
        return None
    if fingerprint[fingerprint_class] < STRONG_FINGERPRINT:
        return None
    return (
        f"the User-Agent says {user_agent} but the connection looks like "
        f"{fingerprint_class} (rtt {tcp.rtt * 1000:.1f} ms, "
        f"variance {tcp.rtt_variance * 1000:.1f} ms)"
    )


def _moving_average(
    old: Mapping[str, float], new: Mapping[str, float], weight: float
) -> dict[str, float]:
    """``new`` blended into ``old`` by ``weight``; the first observation is taken
    as it is, so a client's first transfer is not mistaken for weak evidence."""
    if not old:
        return dict(new)
    return {
        name: (1 - weight) * old.get(name, 0.0) + weight * new.get(name, 0.0)
        for name in old.keys() | new.keys()
    }


def _strongest(scores: Mapping[str, float]) -> str | None:
    """The class with the highest score; a tie goes to the earlier of
    :data:`CLIENT_CLASSES`, the gentler strategy."""
    if not scores:
        return None
    return max(scores, key=lambda name: (scores[name], -CLIENT_CLASSES.index(name)))


def _add(scores: dict[str, float], client_class: str, amount: float) -> None:
    scores[client_class] = scores.get(client_class, 0.0) + amount


def _client_key(transfer: Transfer) -> ClientKey:
    return transfer.peer, transfer.user_agent[:KEY_USER_AGENT_LENGTH]
