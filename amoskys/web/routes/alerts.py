"""Alert routes: alerts filtered and paged, one alert, the open count; triage and suppression (admins).

Reads come from the read model (amoskys.store.queries.alerts). Every action goes through the detections'
desk (`ctx.detections`, amoskys.detections.desk), which audits it and commits it before it returns, so
the answer (and the next page load) already shows its effect.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from amoskys.detections.desk import MAX_SUPPRESSION_NS, AlertDesk
from amoskys.store.queries import alerts as reads
from amoskys.web.endpoints import ApiError, Call, Router
from amoskys.web.routes.common import Limit

router = Router("alerts")

#: the state filter's choices, as the page offers them
STATE_CHOICES = (
    ("open", "open"),
    ("new", "new"),
    ("acknowledged", "acknowledged"),
    ("resolved", "resolved"),
    ("false_positive", "false positive"),
    ("any", "any"),
)
LEVELS = reads.LEVELS
#: the triage buttons (a row offers those other than its own state)
TRIAGE_ACTIONS = (
    ("acknowledged", "acknowledge"),
    ("resolved", "resolve"),
    ("false_positive", "false positive"),
    ("new", "reopen"),
)
#: fields offered to suppress on (with the alert's own attributes): the Sigma fields we map
SUPPRESS_FIELDS = (
    "Image",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "User",
    "CurrentDirectory",
    "DestinationIp",
    "DestinationPort",
    "SourceIp",
)

_NS = 1_000_000_000
#: the longest suppression the desk takes, in whole hours
MAX_SUPPRESS_HOURS = MAX_SUPPRESSION_NS // (3600 * _NS)

State = Annotated[
    Literal["open", "any", "new", "acknowledged", "resolved", "false_positive"],
    msgspec.Meta(description="open (new or acknowledged: the default), any, or one triage state"),
]
Level = Annotated[
    Literal["informational", "low", "medium", "high", "critical"],
    msgspec.Meta(description="Sigma level: " + ", ".join(reads.LEVELS)),
]
TriageState = Annotated[
    Literal["new", "acknowledged", "resolved", "false_positive"],
    msgspec.Meta(description="new (reopen), acknowledged, resolved or false_positive"),
]


class AlertsQuery(msgspec.Struct, frozen=True):
    level: Level | None = None
    state: State = "open"
    rule: Annotated[str | None, msgspec.Meta(description="a Sigma rule's id, or a built-in rule's name")] = (
        None
    )
    host: Annotated[str | None, msgspec.Meta(description="the source whose events matched")] = None
    synthetic: Annotated[
        bool | None,
        msgspec.Meta(
            description="0: leave out synthetic alerts (on loadgen events), 1: only those; "
            "default: every alert, synthetic ones marked `synthetic: true`"
        ),
    ] = None
    before_seen_ns: (
        Annotated[int, msgspec.Meta(ge=0, description="page on: with `before`, from the previous `next`")]
        | None
    ) = None
    before: (
        Annotated[int, msgspec.Meta(ge=1, description="page on: the previous page's last id (`next`)")] | None
    ) = None
    limit: Limit = 50


class AlertPath(msgspec.Struct, frozen=True):
    id: Annotated[int, msgspec.Meta(ge=1, description="the alert's id (store_seq of its first event)")]


class TriageBody(msgspec.Struct, frozen=True):
    state: TriageState
    note: Annotated[str, msgspec.Meta(max_length=500, description="why (shown with the state)")] = ""


class OpenQuery(msgspec.Struct, frozen=True):
    synthetic: Annotated[
        bool, msgspec.Meta(description="1: count alerts on synthetic (loadgen) events in the total")
    ] = False


class SuppressionsQuery(msgspec.Struct, frozen=True):
    ended: Annotated[bool, msgspec.Meta(description="1: the removed and expired ones too")] = False


class SuppressBody(msgspec.Struct, frozen=True):
    rule_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="the rule's id")]
    field: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=64, description="a Sigma field name (Image, CommandLine, User, ...)"
        ),
    ]
    value: Annotated[
        str, msgspec.Meta(max_length=4096, description="matched exactly against that field of an event")
    ]
    hours: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=MAX_SUPPRESS_HOURS,
            description=f"expires after this many hours (1..{MAX_SUPPRESS_HOURS})",
        ),
    ]
    host: Annotated[
        str, msgspec.Meta(max_length=200, description="one source ('' or absent: every host)")
    ] = ""
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class SuppressionPath(msgspec.Struct, frozen=True):
    id: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{1,64}$", description="the suppression's id")]


def desk(call: Call) -> AlertDesk:
    """The detections' desk (every alert action goes through it)."""
    found = call.ctx.detections
    if found is None:
        raise ApiError(503, "detections do not run in this process: alerts cannot be changed here")
    return found


@router.get(
    "/api/v1/alerts",
    "Alerts, latest match first, filtered by level, triage state, rule and host; with the open count",
)
async def alerts(call: Call, *, query: AlertsQuery) -> Any:
    if (query.before is None) != (query.before_seen_ns is None):
        raise ApiError(400, "query parameters 'before' and 'before_seen_ns' go together (from `next`)")
    before = (
        (query.before_seen_ns, query.before) if query.before and query.before_seen_ns is not None else None
    )
    items, open_total = await reads.page(
        call.ctx.reads,
        level=query.level,
        state=query.state,
        rule=query.rule,
        host=query.host,
        synthetic=query.synthetic,
        before=before,
        limit=query.limit,
    )
    full = len(items) == query.limit
    nxt = {"before_seen_ns": items[-1]["last_seen_ns"], "before": items[-1]["id"]} if full else None
    return {"items": items, "next": nxt, "open": open_total}


@router.get("/api/v1/alerts/open", "How many alerts are open (new or acknowledged): in all and by level")
async def open_alerts(call: Call, *, query: OpenQuery) -> Any:
    return await reads.open_counts(call.ctx.reads, synthetic=query.synthetic)


@router.get(
    "/api/v1/alerts/suppressions",
    "Suppressions (rule x host x field value, until they expire): the active ones, newest first",
)
async def suppressions(call: Call, *, query: SuppressionsQuery) -> Any:
    items = await reads.suppressions(call.ctx.reads, call.ctx.clock_ns(), ended=query.ended)
    return {"items": items, "ended": query.ended}


@router.post(
    "/api/v1/alerts/suppressions",
    "Suppress a rule's matches whose field has this value, on one host or every host, until it expires "
    "(audited)",
    role="admin",
)
async def suppress(call: Call, *, body: SuppressBody) -> Any:
    expires_ns = call.ctx.clock_ns() + body.hours * 3600 * _NS
    sid = await desk(call).suppress(
        call.actor,
        rule_id=body.rule_id,
        host=body.host,
        field=body.field,
        value=body.value,
        expires_ns=expires_ns,
        reason=body.reason,
    )
    return {"id": sid, "rule_id": body.rule_id, "host": body.host, "expires_ns": expires_ns}


@router.post(
    "/api/v1/alerts/suppressions/{id}/delete", "End a suppression before it expires (audited)", role="admin"
)
async def unsuppress(call: Call, *, path: SuppressionPath) -> Any:
    await desk(call).unsuppress(call.actor, path.id)
    return {"id": path.id, "removed": True}


@router.get("/api/v1/alerts/{id}", "One alert, with its evidence events")
async def alert(call: Call, *, path: AlertPath) -> Any:
    found = await reads.one(call.ctx.reads, path.id)
    if found is None:
        raise ApiError(404, f"no alert with id {path.id}")
    return found


@router.post(
    "/api/v1/alerts/{id}/triage",
    "Set an alert's triage state (acknowledged, resolved, false_positive; new reopens it); audited",
    role="admin",
)
async def triage(call: Call, *, path: AlertPath, body: TriageBody) -> Any:
    await desk(call).triage(call.actor, path.id, body.state, body.note)
    return {"id": path.id, "state": body.state, "state_by": call.p.user, "state_note": body.note}
