"""Test-only network block: put this folder on PYTHONPATH and every Python process that starts with
it (a Jupyter kernel, pip, torchrun and the workers it starts) can reach loopback and unix sockets
only, as in a Kaggle notebook with internet off.

socket.socket.connect / connect_ex and socket.create_connection refuse any other address with
NetworkBlocked (a ConnectionRefusedError, so libraries treat it as an unreachable host).
Host names other than "localhost" are refused without resolving them: resolving would itself use
the network.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

MARKER = "arc-trm netblock"


class NetworkBlocked(ConnectionRefusedError):
    pass


def _allowed(family: int, address: object) -> bool:
    if family == getattr(socket, "AF_UNIX", None):
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a host name: refuse rather than resolve it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _refuse(address: object) -> NetworkBlocked:
    return NetworkBlocked(errno.ECONNREFUSED, f"{MARKER}: connection to {address!r} refused (network is off in this test)")


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_create_connection = socket.create_connection


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _allowed(self.family, address):
        raise _refuse(address)
    return _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _allowed(self.family, address):
        return errno.ECONNREFUSED
    return _connect_ex(self, address)


def _guarded_create_connection(address, *args, **kwargs):
    family = socket.AF_INET6 if isinstance(address, tuple) and ":" in str(address[0]) else socket.AF_INET
    if not _allowed(family, address):
        raise _refuse(address)
    return _create_connection(address, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.create_connection = _guarded_create_connection
