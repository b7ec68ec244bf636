"""Forwarders: every sink that sends the store's events elsewhere shares one shape (`base.Forwarder`):
a durable cursor, batches read in store order, sends retried until acked, lag on /metrics. A sink adds
only how a batch is sealed and sent (`base.Sink`): `bus` forwards to another appliance's EventBus.
"""
