"""Names of IP protocols and well-known services, for showing flows: IANA's protocol keywords (the
"Assigned Internet Protocol Numbers" registry) and service names of the ports a sensor commonly sees
(the "Service Name and Transport Protocol Port Number" registry). A fixed table, not /etc/services:
the same name on every box, and no file read in the event loop."""

from __future__ import annotations

#: IANA protocol numbers → keywords (the ones a LAN sensor meets; others show as their number)
PROTOCOLS: dict[int, str] = {
    1: "ICMP",
    2: "IGMP",
    4: "IPv4",
    6: "TCP",
    17: "UDP",
    41: "IPv6",
    43: "IPv6-Route",
    44: "IPv6-Frag",
    46: "RSVP",
    47: "GRE",
    50: "ESP",
    51: "AH",
    58: "ICMPv6",
    59: "IPv6-NoNxt",
    60: "IPv6-Opts",
    88: "EIGRP",
    89: "OSPF",
    103: "PIM",
    112: "VRRP",
    115: "L2TP",
    132: "SCTP",
    136: "UDPLite",
}

TCP, UDP, SCTP = 6, 17, 132

#: (transport, port) → IANA service name; transport None: the same name over TCP and UDP
_SERVICES: dict[tuple[int | None, int], str] = {
    (TCP, 20): "ftp-data",
    (TCP, 21): "ftp",
    (TCP, 22): "ssh",
    (TCP, 23): "telnet",
    (TCP, 25): "smtp",
    (None, 53): "domain",
    (UDP, 67): "bootps",
    (UDP, 68): "bootpc",
    (UDP, 69): "tftp",
    (TCP, 80): "http",
    (None, 88): "kerberos",
    (TCP, 110): "pop3",
    (None, 123): "ntp",
    (None, 135): "epmap",
    (UDP, 137): "netbios-ns",
    (UDP, 138): "netbios-dgm",
    (TCP, 139): "netbios-ssn",
    (TCP, 143): "imap",
    (UDP, 161): "snmp",
    (UDP, 162): "snmptrap",
    (TCP, 179): "bgp",
    (None, 389): "ldap",
    (TCP, 443): "https",
    (UDP, 443): "quic",
    (TCP, 445): "microsoft-ds",
    (UDP, 500): "isakmp",
    (UDP, 514): "syslog",
    (TCP, 515): "printer",
    (UDP, 546): "dhcpv6-client",
    (UDP, 547): "dhcpv6-server",
    (TCP, 587): "submission",
    (TCP, 631): "ipp",
    (TCP, 636): "ldaps",
    (TCP, 853): "domain-s",
    (TCP, 873): "rsync",
    (TCP, 993): "imaps",
    (TCP, 995): "pop3s",
    (UDP, 1194): "openvpn",
    (TCP, 1433): "ms-sql-s",
    (UDP, 1812): "radius",
    (UDP, 1813): "radius-acct",
    (TCP, 1883): "mqtt",
    (UDP, 1900): "ssdp",
    (TCP, 2049): "nfs",
    (TCP, 3306): "mysql",
    (TCP, 3389): "ms-wbt-server",
    (UDP, 3478): "stun",
    (UDP, 4500): "ipsec-nat-t",
    (TCP, 4222): "nats",
    (UDP, 5353): "mdns",
    (UDP, 5355): "llmnr",
    (TCP, 5432): "postgresql",
    (TCP, 5671): "amqps",
    (TCP, 5672): "amqp",
    (TCP, 5900): "rfb",
    (TCP, 6379): "redis",
    (TCP, 6443): "sun-sr-https",
    (TCP, 8080): "http-alt",
    (TCP, 8443): "pcsync-https",
    (TCP, 8883): "secure-mqtt",
    (TCP, 9090): "websm",
    (TCP, 9100): "jetdirect",
    (UDP, 51820): "wireguard",
}


def protocol_name(number: int) -> str:
    """The IANA keyword of an IP protocol number ("TCP"), else the number itself ("253")."""
    return PROTOCOLS.get(number, str(number))


def service_name(protocol: int, port: int) -> str:
    """The IANA service name of a TCP, UDP or SCTP port ("https"), else "" (ICMP and the rest: "")."""
    if protocol not in (TCP, UDP, SCTP) or not port:
        return ""
    return _SERVICES.get((protocol, port)) or _SERVICES.get((None, port), "")


def flow_service(protocol: int, src_port: int, dst_port: int) -> str:
    """The service a flow speaks: its destination port's name, else (a reply seen first) its source
    port's, else ""."""
    return service_name(protocol, dst_port) or service_name(protocol, src_port)
