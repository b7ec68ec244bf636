"""Built-in detectors: small state machines fed events, flow starts and the clock, each returning
findings that amoskys.detections.builtin.runner raises as alerts (rule ids ``amoskys.<detector>``).
Importing this package imports nothing."""
