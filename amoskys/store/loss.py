"""LossReport envelopes the store writes about itself (dropped or vanished rows)."""

from __future__ import annotations

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2
from amoskys.store.records import Record


def loss_record(
    stamper: EnvelopeStamper,
    *,
    ts_ns: int,
    reason: str,
    count: int,
    range_start: int,
    range_end: int,
    window_start_ns: int = 0,
    window_end_ns: int = 0,
) -> Record:
    """A Record of a LossReport about store rows (what='events', where='store'); the range is in
    store_seq, inclusive."""
    envelope = stamper.stamp(
        events_pb2.Envelope(
            loss=events_pb2.LossReport(
                what="events",
                where="store",
                count=count,
                reason=reason,
                range_start=range_start,
                range_end=range_end,
                window_start_ns=window_start_ns,
                window_end_ns=window_end_ns,
            )
        ),
        ts_ns=ts_ns,
    )
    return Record.from_envelope(envelope)
