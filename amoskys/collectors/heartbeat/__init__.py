"""The heartbeat collector: the appliance's own liveness and build info, every interval."""
