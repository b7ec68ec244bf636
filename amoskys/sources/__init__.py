"""Sources of events from outside this appliance's own bus: the fleet's NATS JetStream stream, read by
a hub (`amoskys.sources.nats`)."""
