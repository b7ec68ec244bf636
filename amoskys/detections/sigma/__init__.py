"""Sigma rules evaluated on the live event stream.

`fields` maps our events to Sigma's field names and imports nothing heavy; `engine` (the public API:
`load_rules`, `RuleSet.match`) imports pySigma, so it is imported off the event loop, before ready."""
