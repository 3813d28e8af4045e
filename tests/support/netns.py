"""A multi-host farm on one machine: network namespaces joined by a bridge on a private subnet.

Hosts (each a namespace with one veth into the bridge ``<tag>br``):

- ``server``  SUBNET.10 (Redis) and SUBNET.11 (PostgreSQL): two addresses, so that a host can be
  cut off one server and not the other with a route (``ip route add blackhole``);
- ``gw1``, ``gw2`` (SUBNET.21-22), ``node1``-``node3`` (SUBNET.31-33), ``shell`` (SUBNET.40).

The test itself (the observer: it reads PostgreSQL for the audit, starts and kills processes)
sits in the machine's own namespace at SUBNET.1 on the bridge. Nothing is routed or forwarded
off the bridge: the namespaces have no default route, so all traffic stays between them.

Names start with ``rfns<pid in hex>``; a run cleans up everything it made on the way out (also
when the test fails), and first removes the leftovers of runs whose process is gone. Needs root and
iproute2: ``require_netns()`` skips without them, and fails instead where CI is set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

NAME_PREFIX = "rfns"
SUBNET = os.environ.get("RFARM_NETNS_SUBNET", "10.201.77")  # a /24 of our own; checked unused first
OBSERVER = 1
ADDRESSES = {
    "server": (10, 11),
    "gw1": (21,),
    "gw2": (22,),
    "node1": (31,),
    "node2": (32,),
    "node3": (33,),
    "shell": (40,),
}


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def require_netns() -> None:
    """Skip (fail in CI) where namespaces cannot be made: not root, or no iproute2."""
    why = None
    if os.geteuid() != 0:
        why = "the namespace farm needs root"
    elif shutil.which("ip") is None:
        why = "the namespace farm needs iproute2 (apt-get install iproute2)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def has_netem() -> bool:
    """Whether the kernel has sch_netem (tc netem): tried on a namespace's loopback."""
    if shutil.which("tc") is None:
        return False
    name = f"{NAME_PREFIX}{os.getpid():06x}probe"
    ip("netns", "add", name)
    try:
        done = subprocess.run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                               "delay", "1ms"], capture_output=True, check=False, timeout=30)
        return done.returncode == 0
    finally:
        ip("netns", "del", name, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ours(name: str) -> int | None:
    """The pid a name of ours was made by, or None if it is not one of ours."""
    found = re.match(rf"{NAME_PREFIX}([0-9a-f]{{6}})", name)
    return int(found.group(1), 16) if found else None


def clean_leftovers() -> list[str]:
    """Remove the namespaces and links of earlier runs whose process is gone; returns their names."""
    removed: list[str] = []
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        pid = _ours(name)
        if pid is not None and not _alive(pid):
            ip("netns", "del", name, check=False)
            removed.append(name)
    for line in ip("-o", "link", "show").stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        pid = _ours(name)
        if pid is not None and not _alive(pid):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def subnet_in_use() -> str | None:
    """What on this machine already uses SUBNET (an address or a route), or None."""
    for out in (ip("-o", "addr").stdout, ip("route").stdout, ip("rule").stdout):
        for line in out.splitlines():
            if f"{SUBNET}." in line:
                return line.strip()
    return None


@dataclass
class Host:
    name: str  # the short name: server, gw1, ...
    netns: str  # the namespace's name
    veth: str  # the bridge side of its link (in the machine's namespace)
    addresses: tuple[str, ...]

    @property
    def address(self) -> str:
        return self.addresses[0]

    @property
    def run(self) -> list[str]:
        """The command prefix that runs a program in this host."""
        return ["ip", "netns", "exec", self.netns]

    def sh(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.run, *argv], capture_output=True, text=True, check=False, timeout=30)
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(argv)}: {result.stderr.strip()}")
        return result


@dataclass
class NetFarm:
    tag: str
    bridge: str
    hosts: dict[str, Host] = field(default_factory=dict)
    cuts: list[tuple[str, str]] = field(default_factory=list)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    @property
    def redis_address(self) -> str:
        return self.hosts["server"].addresses[0]

    @property
    def postgres_address(self) -> str:
        return self.hosts["server"].addresses[1]

    # --- faults ---------------------------------------------------------------------------------

    def cut_link(self, host: str) -> None:
        """The host's cable pulled: its link to the bridge down; open connections hang, none is reset."""
        ip("link", "set", self.hosts[host].veth, "down")

    def restore_link(self, host: str) -> None:
        ip("link", "set", self.hosts[host].veth, "up")

    def cut_route(self, host: str, to: str) -> None:
        """``host`` no longer reaches the address ``to`` (packets dropped, nothing reset)."""
        self.hosts[host].sh("ip", "route", "add", "blackhole", f"{to}/32")
        self.cuts.append((host, to))

    def restore_route(self, host: str, to: str) -> None:
        self.hosts[host].sh("ip", "route", "del", "blackhole", f"{to}/32")
        self.cuts.remove((host, to))

    def netem(self, host: str, *spec: str) -> None:
        """``tc netem`` on the host's side of its link (what it sends: reports, reads, acks)."""
        self.hosts[host].sh("tc", "qdisc", "replace", "dev", "eth0", "root", "netem", *spec)

    def clear_netem(self, host: str) -> None:
        self.hosts[host].sh("tc", "qdisc", "del", "dev", "eth0", "root", check=False)


def _build(farm: NetFarm) -> None:
    ip("link", "add", farm.bridge, "type", "bridge")
    ip("addr", "add", f"{SUBNET}.{OBSERVER}/24", "dev", farm.bridge)
    ip("link", "set", farm.bridge, "up")
    for index, (name, octets) in enumerate(ADDRESSES.items()):
        netns = f"{farm.tag}-{name}"
        veth, inner = f"{farm.tag}v{index}", f"{farm.tag}i{index}"
        host = Host(name, netns, veth, tuple(f"{SUBNET}.{o}" for o in octets))
        farm.hosts[name] = host
        ip("netns", "add", netns)
        ip("link", "add", veth, "type", "veth", "peer", "name", inner)
        ip("link", "set", inner, "netns", netns)
        ip("link", "set", veth, "master", farm.bridge)
        ip("link", "set", veth, "up")
        host.sh("ip", "link", "set", "lo", "up")
        host.sh("ip", "link", "set", inner, "name", "eth0")
        for address in host.addresses:
            host.sh("ip", "addr", "add", f"{address}/24", "dev", "eth0")
        host.sh("ip", "link", "set", "eth0", "up")


def _tear_down(farm: NetFarm) -> None:
    for host in farm.hosts.values():
        # killing the namespace's processes is the caller's (it started them); the namespace and
        # its end of the veth pair go with `netns del`, the bridge side with it
        ip("netns", "del", host.netns, check=False)
        ip("link", "del", host.veth, check=False)
    ip("link", "del", farm.bridge, check=False)


@contextmanager
def namespace_farm() -> Iterator[NetFarm]:
    """The hosts, made and (whatever happens) removed again."""
    require_netns()
    clean_leftovers()
    tag = f"{NAME_PREFIX}{os.getpid():06x}"
    other = [line for line in ip("netns", "list").stdout.splitlines() if line.startswith(NAME_PREFIX)]
    if other:
        pytest.fail(f"another namespace farm is running on this machine: {other[0].split()[0]}")
    used = subnet_in_use()
    if used:
        pytest.fail(f"subnet {SUBNET}.0/24 is in use here ({used}); set RFARM_NETNS_SUBNET to another /24")
    farm = NetFarm(tag=tag, bridge=f"{tag}br")
    try:
        _build(farm)
        yield farm
    finally:
        _tear_down(farm)
