"""Alert sinks: deliver the store's alerts where people already look — an HTTP webhook (signed), a
syslog server (RFC 5424 over UDP, TCP or TLS) and an Elastic Common Schema JSON Lines file.

Each is a forwarder (amoskys.forwarders.base): a durable cursor keyed by the sink's name, batches read
in store order, sends retried with backoff until acked, lag on /metrics, woken by the store's commits.
A sink forwards only Alert events; its `min_level` and `rules` filter leaves some out, and its cursor
moves past those too. Delivery is at least once: after a crash or a lost answer, a batch is sent
again, so receivers dedupe on the alert event's id.
"""
