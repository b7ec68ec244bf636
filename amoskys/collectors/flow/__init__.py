"""The flow meter: header parser, bidirectional flow table, Community ID, pcap/pcapng readers."""
