"""Backup and restore of a data dir: a consistent copy of the store made while the appliance runs
(``snapshot``), packed with the data dir's other files and the config into one 0600 tar (``archive``)."""
