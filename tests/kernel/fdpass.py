#!/usr/bin/env python3
"""Stands in for xapi's /services/SM/nbd handler (issue 31): accepts one
NBD client connection on LISTEN, then passes its descriptor by SCM_RIGHTS
to the socket Datapath.import_activate returned, with the datapath id as
the message's text, as xapi does. Usage: fdpass.py IMPORT_SOCKET LISTEN DP_ID"""

import socket
import sys

target, listen, datapath = sys.argv[1:4]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(listen)
server.listen(1)
connection, _ = server.accept()
sender = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sender.connect(target)
socket.send_fds(sender, [datapath.encode()], [connection.fileno()])
sender.close()
connection.close()   # the receiver holds its own copy now
server.close()
