"""RFC 5424 messages of alerts: SD-PARAM escaping and names, octet counting, the UDP size limit."""

from __future__ import annotations

from amoskys.sinks import rfc5424
from amoskys.sinks.alerts import SinkAlert

from .harness import alert


def test_sd_param_values_escape_quote_backslash_and_bracket() -> None:
    assert rfc5424.escape_param('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert rfc5424.param_name('bad name="x"]' + "y" * 40) == "bad_name__x__" + "y" * 19
    assert rfc5424.octet_counted(b"<1>1 - - - - - -") == b"16 <1>1 - - - - - -"


def test_a_udp_message_never_passes_2048_octets_and_keeps_its_identity() -> None:
    envelope = alert(7, title="t" * 3000, summary="s" * 3000)
    envelope.event_id, envelope.source = "0190-aaaa", "box-1"
    msg, cut = rfc5424.message(
        SinkAlert(1, 1, envelope), facility="local0", app_name="amoskys", limit=rfc5424.UDP_MAX_OCTETS
    )
    assert cut and len(msg) <= rfc5424.UDP_MAX_OCTETS
    assert msg.endswith(rfc5424.TRUNCATED_MARKER)
    assert b'[amoskys@32473 event_id="0190-aaaa" rule_id="amoskys.exec_from_tmp" level="high"] sss' in msg
    whole, cut = rfc5424.message(SinkAlert(1, 1, envelope), facility="local0", app_name="amoskys")
    assert not cut and len(whole) > 6000


def test_pri_is_facility_times_eight_plus_the_levels_severity() -> None:
    envelope = alert(1, level="low")
    envelope.source = "box-1"
    msg, _ = rfc5424.message(SinkAlert(1, 1, envelope), facility="auth", app_name="a")
    assert msg.startswith(b"<37>1 ")  # auth (4) * 8 + notice (5)
    envelope.source = "has space"
    msg, _ = rfc5424.message(SinkAlert(1, 1, envelope), facility="local7", app_name="a")
    assert msg.startswith(b"<189>1 ") and b"Z - a - alert [" in msg  # no valid HOSTNAME: the nil value
