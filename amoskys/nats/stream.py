"""The fleet stream: created when missing, checked when it exists.

One stream (default name ``AMOSKYS``) holds every box's events under ``amoskys.>``: file storage, a
duplicate window (server-side dedup on Nats-Msg-Id), direct get allowed, max age and bytes as
configured. An existing stream is used as it is, after checking that its subjects cover this site
(``amoskys.<site>.>``); whether it allows direct get is reported so readers can fall back to the
STREAM.MSG.GET API.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

from amoskys.errors import AmoskysError
from amoskys.nats.subjects import ROOT

log = structlog.get_logger(__name__)

#: The subjects a stream created here takes.
STREAM_SUBJECTS = (f"{ROOT}.>",)
#: JetStream's error code for "stream name already in use" (another box created it meanwhile).
_ERR_STREAM_NAME_IN_USE = 10058


class StreamConfigError(AmoskysError):
    """The existing stream cannot take this box's events (its subjects do not cover them)."""

    def __init__(self, message: str, *, stream: str) -> None:
        super().__init__(message)
        self.stream = stream


@dataclass(frozen=True, slots=True)
class StreamState:
    """What a publisher or reader needs to know about the stream it uses."""

    name: str
    allow_direct: bool
    duplicate_window_seconds: float
    last_seq: int
    created: bool


def subject_covers(pattern: str, subject: str) -> bool:
    """Whether every subject matched by `subject` (which may end in `>` or hold `*`) is matched by
    `pattern`."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if token == "*":
            if s[i] == ">":
                return False
            continue
        if token != s[i]:
            return False
    return len(p) == len(s)


async def ensure_stream(
    js: JetStreamContext,
    name: str,
    *,
    subjects_prefix: str,
    max_age_seconds: float = 0,
    max_bytes: int = 0,
    duplicate_window_seconds: float = 120,
) -> StreamState:
    """The stream `name`, created if missing (see the module docstring). `subjects_prefix` is the
    part of the subject space this caller uses (``amoskys.<site>``): an existing stream must cover
    ``<prefix>.>``. Raises StreamConfigError when it does not; NATS errors propagate."""
    wanted = f"{subjects_prefix}.>"
    created = False
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        config = api.StreamConfig(
            name=name,
            subjects=list(STREAM_SUBJECTS),
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD,
            max_age=max_age_seconds or None,
            max_bytes=max_bytes or -1,
            duplicate_window=duplicate_window_seconds,
            allow_direct=True,
        )
        try:
            info = await js.add_stream(config)
            created = True
            log.info("nats_stream_created", stream=name, subjects=list(STREAM_SUBJECTS))
        except BadRequestError as err:
            if err.err_code != _ERR_STREAM_NAME_IN_USE:
                raise
            info = await js.stream_info(name)  # created by another box meanwhile
    cfg = info.config
    subjects = cfg.subjects or []
    if not any(subject_covers(p, wanted) for p in subjects):
        raise StreamConfigError(
            f"NATS stream {name!r} takes subjects {subjects}, which do not cover {wanted!r}",
            stream=name,
        )
    return StreamState(
        name=name,
        allow_direct=bool(cfg.allow_direct),
        duplicate_window_seconds=float(cfg.duplicate_window or 0),
        last_seq=int(info.state.last_seq or 0),
        created=created,
    )
