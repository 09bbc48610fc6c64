"""The environment a run measured in: what a comparison must match before it compares."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from pathlib import Path
from typing import Literal

from harness.results.schema import Environment

PACKAGES = (
    "ondevice-bench",
    "torch",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "coremltools",
    "executorch",
    "numpy",
    "scipy",
)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
MacHost = Literal["apple-silicon", "rosetta", "intel"]
ROSETTA = (
    "Python runs under Rosetta (an x86_64 Python on Apple silicon): install an arm64 Python "
    "to reach the Neural Engine and to measure native code"
)


def mac_host(machine: str, proc_translated: int | None) -> MacHost:
    """What kind of Mac this process sees, from `platform.machine()` and the `sysctl.proc_translated`
    value: an x86_64 machine is Apple silicon under Rosetta when that value is 1, and an Intel Mac when it
    is 0 or absent (the name exists only on Apple silicon's macOS), so Rosetta is never read as a Mac
    without a Neural Engine."""
    if machine == "arm64":
        return "apple-silicon"
    return "rosetta" if proc_translated == 1 else "intel"


def proc_translated() -> int | None:
    """This process's `sysctl.proc_translated` (macOS): 1 under Rosetta, 0 native, None where the name is
    unknown (Intel Macs) or not macOS."""
    import ctypes
    import ctypes.util

    if platform.system() != "Darwin":
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    value = ctypes.c_int(0)
    size = ctypes.c_size_t(ctypes.sizeof(value))
    if libc.sysctlbyname(b"sysctl.proc_translated", ctypes.byref(value), ctypes.byref(size), None, 0) != 0:
        return None
    return value.value


def macos_version() -> tuple[int, ...]:
    """(major, minor, ...) of this macOS; () elsewhere."""
    release = platform.mac_ver()[0]
    return tuple(int(part) for part in release.split(".") if part.isdigit()) if release else ()


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    if platform.system() == "Darwin":
        import subprocess

        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.strip()
    return platform.processor() or "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def accelerator() -> str:
    """What besides the CPU can run a model on this host, for the machine key of a history series: the
    Neural Engine and GPU of Apple silicon, or the NVIDIA GPUs NVML names (nvidia-ml-py, the `gpu` extra);
    "" where neither is found."""
    if platform.system() == "Darwin" and mac_host(platform.machine(), proc_translated()) == "apple-silicon":
        return "Apple Neural Engine and GPU"
    try:
        import pynvml
    except ImportError:
        return ""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no NVML library or no driver: no NVIDIA accelerator on this host
        return ""
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(index) for index in range(pynvml.nvmlDeviceGetCount())]
        names = [pynvml.nvmlDeviceGetName(handle) for handle in handles]
    finally:
        pynvml.nvmlShutdown()
    return ", ".join(name.decode() if isinstance(name, bytes) else str(name) for name in names)


def code_revision(directory: Path) -> tuple[str | None, str | None]:
    """The commit (`git rev-parse HEAD`) and `git describe --always --dirty` of `directory` when it is a git
    repository, else (None, None): the revision a run records when `bench run --revision` is not given."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return (done.stdout.strip() or None) if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    return (commit, git("describe", "--always", "--dirty")) if commit else (None, None)


def capture(intra_op_threads: int) -> Environment:
    return Environment(
        os=f"{platform.system()} {platform.release()}",
        machine=platform.machine(),
        cpu=cpu_model(),
        cores=os.cpu_count() or 0,
        python=platform.python_version(),
        packages=package_versions(),
        threads={
            "intra_op": intra_op_threads,
            **{name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
        },
        hostname=socket.gethostname(),
        accelerator=accelerator(),
    )
