"""NATS JetStream plumbing shared by the fleet forwarder and the hub: subject names, the connection,
and the stream. The forwarder itself is `amoskys.forwarders.nats`."""
