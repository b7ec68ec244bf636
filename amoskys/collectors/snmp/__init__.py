"""The SNMP collector: system group, IF-MIB interfaces with rates, HOST-RESOURCES, from v2c/v3 agents."""
