"""The appliance's web port: pages, JSON API, /metrics and health endpoints."""
