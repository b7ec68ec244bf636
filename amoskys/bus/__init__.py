"""The EventBus: the publish path for local collectors and the gRPC server for remote agents."""
