"""The discovery collector: who is on the LAN (ARP sweep, passive ARP/DHCP, neighbour table), and who is new."""
