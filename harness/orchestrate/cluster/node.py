"""`bench node start`: this host joins a cluster (or starts one) advertising what it can measure on.

A node advertises one Ray custom resource per device this host's backends confirm (`bench-cpu`,
`bench-gpu`, `bench-ane`: a device is confirmed when at least one backend reports it available here),
and one `bench-measure` slot, which every measuring task takes (`executor.job_resources`): at most one
measurement on a machine at a time, while preparations, which take no slot, run beside it. A device no
backend confirms is never advertised, so no case is placed where it would only be refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness.backends.registry import backends
from profiles.errors import ConfigError

DEVICES = ("cpu", "gpu", "ane")
EXTRA = "cluster"
MISSING = f"--cluster needs Ray, which is not installed: pip install 'ondevice-bench[{EXTRA}]'"
MEASURE = "bench-measure"  # one per node: at most one measuring task on a machine at a time


def device_resource(device: str) -> str:
    """The custom resource a node advertises for a device it has."""
    return f"bench-{device}"


def import_ray() -> Any:
    """Ray, or the `ConfigError` naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(MISSING) from None
    return ray


def host_port(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit()


def backend_reasons() -> dict[str, dict[str, str | None]]:
    """What each backend of this host says of each device (None: available): a node's answer, asked by
    the driver when it plans a run (`RayExecutor.device_reason`)."""
    return {name: {device: cls().available(device) for device in DEVICES} for name, cls in backends().items()}


def confirmed_devices() -> list[str]:
    """The devices at least one backend can run here, in `DEVICES` order."""
    instances = [cls() for cls in backends().values()]
    return [device for device in DEVICES if any(b.available(device) is None for b in instances)]


def node_resources(devices: list[str]) -> dict[str, float]:
    return {**{device_resource(device): 1.0 for device in devices}, MEASURE: 1.0}


def ray_start_command(head: bool, address: str | None, resources: dict[str, float]) -> list[str]:
    """`ray start` as this interpreter's Ray runs it: as the head, or joining the head at `address`."""
    if head == (address is not None):
        raise ConfigError("bench node start: give --head or --address HOST:PORT (one of them)")
    if address is not None and not host_port(address):
        raise ConfigError(f"--address {address!r}: expected the head's HOST:PORT, e.g. 10.0.0.2:6379")
    import_ray()
    ray = str(Path(sys.executable).with_name("ray"))
    where = ["--head"] if head else [f"--address={address}"]
    return [ray, "start", *where, f"--resources={json.dumps(resources)}"]
