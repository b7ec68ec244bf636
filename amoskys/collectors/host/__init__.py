"""The host collector: CPU, memory, disks, network, load, uptime, users and temperatures."""
