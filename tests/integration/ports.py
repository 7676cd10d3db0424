"""Ports for the Ray processes a test starts itself (`ray start`), held until they are handed over.

A test cluster needs a dozen ports (GCS, dashboard, agents, node/object managers, worker range).
Asking the kernel for "a free port" once per component can return the same number twice, and a
number another process binds before Ray does. So a test takes one contiguous block:

* blocks lie in [20000, 32768): below the kernel's ephemeral range (``ip_local_port_range``, where
  every port-0 bind lands, including the ports Ray picks at random for its own clusters) and above
  Ray's default worker-port range (10002-19999), so nothing else on the machine is handed them;
* a block is claimed with an exclusive ``flock`` on a lock file named for it, held until the test
  ends, so two tests (or two pytest processes) never share a block;
* every port of the block is bound by a socket the block holds until ``release()``, right before
  the ports are passed to ``ray start``; a port some process already uses makes the block skip on.
"""
from __future__ import annotations

import fcntl
import socket
import tempfile
from pathlib import Path

LOW, HIGH = 20000, 32768
LOCK_DIR = Path(tempfile.gettempdir()) / "rlsys-test-ports"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return HIGH


class PortBlock:
    """``size`` consecutive ports, claimed and held; ``port(i)`` is the i-th, ``range(a, b)`` a sub-range."""

    def __init__(self, size: int = 64):
        high = min(HIGH, _ephemeral_low())
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        for base in range(LOW, high - size + 1, size):
            lock = open(LOCK_DIR / f"{base}.lock", "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            sockets = _bind_all(base, size)
            if sockets is not None:
                self.base, self.size, self._lock, self._sockets = base, size, lock, sockets
                return
            lock.close()
        raise RuntimeError(f"no free block of {size} ports in [{LOW}, {high})")

    def port(self, i: int) -> int:
        if not 0 <= i < self.size:
            raise IndexError(f"port {i} outside a block of {self.size}")
        return self.base + i

    def release(self) -> None:
        """Close the held sockets (the lock stays until ``close``): call right before ``ray start``."""
        for s in self._sockets:
            s.close()
        self._sockets = []

    def close(self) -> None:
        self.release()
        self._lock.close()


def _bind_all(base: int, size: int) -> list[socket.socket] | None:
    held = []
    for port in range(base, base + size):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            for h in held:
                h.close()
            return None
        held.append(s)
    return held


def ray_start_port_args(block: PortBlock, first_worker: int = 16) -> list[str]:
    """``ray start`` flags giving every component of one node its own port from ``block``:
    ports 4-9 for the node's agents and managers, ``first_worker``.. for its worker processes. Ports 0-3
    are left to the caller (a head's GCS, dashboard and Ray client server)."""
    names = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
             "--runtime-env-agent-port", "--node-manager-port", "--object-manager-port"]
    args = [a for i, name in enumerate(names) for a in (name, str(block.port(4 + i)))]
    return args + ["--min-worker-port", str(block.port(first_worker)),
                   "--max-worker-port", str(block.port(block.size - 1))]

