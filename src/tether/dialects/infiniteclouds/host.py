"""What the device agent reads from its host (Linux): MAC, interfaces, machine id.

The interface list is built from ``/sys/class/net`` (counters, carrier, operstate) and
IPv4 addresses from the ``SIOCGIFADDR``/``SIOCGIFNETMASK`` ioctls, so the agent needs no
extra package and no ``ip`` binary. Off Linux, the lists are simply empty.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
import uuid
from pathlib import Path
from typing import Any

SYS_NET = Path("/sys/class/net")
#: Namespace of machine ids derived from a MAC when the host has no /etc/machine-id.
MACHINE_NAMESPACE = uuid.UUID("5b0d6c1e-8d1f-4b7e-9a53-1c0f2e6d8a41")
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_COUNTERS = {
    "txPackets": "tx_packets",
    "rxPackets": "rx_packets",
    "txBytes": "tx_bytes",
    "rxBytes": "rx_bytes",
    "txDropped": "tx_dropped",
    "rxDropped": "rx_dropped",
    "txErrors": "tx_errors",
    "rxErrors": "rx_errors",
}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def interface_names(root: Path = SYS_NET) -> list[str]:
    try:
        return sorted(p.name for p in root.iterdir())
    except OSError:
        return []


def mac_of(name: str, root: Path = SYS_NET) -> str | None:
    mac = _read(root / name / "address")
    if not mac or mac == "00:00:00:00:00:00" or len(mac) != 17:
        return None
    return mac.lower()


def primary_mac(preferred: str | None = None, root: Path = SYS_NET) -> str | None:
    """The MAC of ``preferred``, else of the first non-loopback interface that has one."""
    if preferred is not None:
        return mac_of(preferred, root)
    for name in interface_names(root):
        if name == "lo":
            continue
        mac = mac_of(name, root)
        if mac is not None:
            return mac
    return None


def _ioctl_address(name: str, request: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), request, struct.pack("256s", name[:15].encode()))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def interfaces(root: Path = SYS_NET) -> list[dict[str, Any]]:
    """The interface list in the documented shape (``name``, ``addresses``, statistics)."""
    found = []
    for name in interface_names(root):
        entry: dict[str, Any] = {"name": name, "interfaceName": name, "addresses": []}
        address = _ioctl_address(name, _SIOCGIFADDR)
        if address is not None:
            netmask = _ioctl_address(name, _SIOCGIFNETMASK)
            entry["addresses"].append({"address": address, "netmask": netmask})
        mac = mac_of(name, root)
        if mac is not None:
            entry["macAddress"] = mac
        stats: dict[str, int] = {}
        for key, file in _COUNTERS.items():
            raw = _read(root / name / "statistics" / file)
            if raw is not None:
                with contextlib.suppress(ValueError):
                    stats[key] = int(raw)
        if stats:
            entry["statistics"] = stats
        carrier = _read(root / name / "carrier")
        if carrier is not None:
            entry["carrier"] = carrier == "1"
        operstate = _read(root / name / "operstate")
        if operstate is not None:
            entry["operstate"] = operstate == "up"
        found.append(entry)
    return found


def machine_id(mac: str, machine_id_file: Path = Path("/etc/machine-id")) -> str:
    """A stable machine id (a UUID): the host's /etc/machine-id if it has one, else one
    derived from the MAC, so it survives a wiped state directory either way."""
    raw = _read(machine_id_file)
    if raw and len(raw) == 32:
        with contextlib.suppress(ValueError):
            return str(uuid.UUID(hex=raw))
    return str(uuid.uuid5(MACHINE_NAMESPACE, mac))


def system() -> dict[str, Any]:
    """Uptime, memory use (%) and load-based CPU use (%) for status snapshots."""
    info: dict[str, Any] = {}
    uptime = _read(Path("/proc/uptime"))
    if uptime:
        with contextlib.suppress(ValueError):
            info["uptime"] = int(float(uptime.split()[0]))
    meminfo = _read(Path("/proc/meminfo"))
    if meminfo:
        values = {}
        for line in meminfo.splitlines():
            key, _, rest = line.partition(":")
            with contextlib.suppress(ValueError, IndexError):
                values[key] = int(rest.split()[0])
        total, available = values.get("MemTotal"), values.get("MemAvailable")
        if total and available is not None:
            info["memoryUsage"] = round(100 * (total - available) / total, 2)
    loadavg = _read(Path("/proc/loadavg"))
    if loadavg:
        with contextlib.suppress(ValueError):
            info["cpuUsage"] = float(loadavg.split()[0])
    return info
