"""Detections: what raises alerts from the committed event stream (`sigma/` evaluates Sigma rules).

Importing this package imports nothing else: pySigma is loaded only by `amoskys.detections.sigma.engine`,
off the event loop and only when Sigma rules are configured."""
