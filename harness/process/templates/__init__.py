"""Templates: processes that import a runtime once and fork a fresh worker per case from it
(`harness.process.isolation`), so a process that times milliseconds does not pay seconds of imports.

One template per runtime, and one for the paired processes, which run arms of several runtimes: each
module here is one template's import list, and a backend names its own (`Backend.template`). A
template imports only what a spawned worker of that runtime would import on its way to its load, so a
forked worker's memory rests on the same basis as a spawned one's: the anonymous pages of the imports
are copied at the fork either way, and the file-backed pages the template mapped in (the runtimes'
shared libraries, which a fork does not map into the child until they are touched) are mapped in again
in every child before it starts (`restore_resident`), so `VmRSS` and `VmHWM` count them as they would in
a process that imported the runtime itself.

Imported for their effect, once, in the template. Nothing here starts a thread pool or touches a device:
each runtime's pool is made in the child, at the thread count the case asks for. Core ML is never
imported in a template (templates are not used on macOS, and on Linux coremltools has no runtime).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import mmap
import os
from collections.abc import Iterable

from converters.executorch import quiet_stderr

EXECUTORCH = "executorch.extension.pybindings._C"


def preload(runtimes: Iterable[str]) -> None:
    """Import each runtime that is installed (torchao's import notes go to /dev/null: the template's
    stderr is the user's terminal) and the backends, then make every child map in what this process has
    resident of the files it mapped."""
    logging.getLogger("torchao").setLevel(logging.ERROR)
    with quiet_stderr():
        for name in runtimes:
            try:
                importlib.import_module(name)
            except ImportError:
                continue
        importlib.import_module("harness.backends.registry")
    resident = resident_file_pages()
    os.register_at_fork(after_in_child=lambda: restore_resident(resident))


def resident_file_pages() -> list[tuple[int, int]]:
    """(address, pages) of each run of pages this process has mapped in from the files it mapped for
    reading (`/proc/self/pagemap`'s present bit); none where the kernel does not show the map."""
    import numpy as np

    page = mmap.PAGESIZE
    runs: list[tuple[int, int]] = []
    try:
        with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
            for line in maps:
                fields = line.split(maxsplit=5)
                path = fields[5].strip() if len(fields) == 6 else ""
                if not fields[1].startswith("r") or not path.startswith("/") or path.startswith("/dev/"):
                    continue
                start, end = (int(bound, 16) for bound in fields[0].split("-"))
                pagemap.seek(start // page * 8)
                entries = np.frombuffer(pagemap.read((end - start) // page * 8), dtype=np.uint64)
                present = np.flatnonzero(entries >> np.uint64(63))
                for run in np.split(present, np.flatnonzero(np.diff(present) != 1) + 1):
                    if run.size:
                        runs.append((start + int(run[0]) * page, int(run.size)))
    except OSError:
        return []
    return runs


def restore_resident(runs: list[tuple[int, int]]) -> None:
    """Read one byte of each page in `runs`: a minor fault maps the page, already in the page cache, into
    this process, as the template had it."""
    page = mmap.PAGESIZE
    for address, pages in runs:
        view = memoryview((ctypes.c_ubyte * (pages * page)).from_address(address)).cast("B")
        bytes(view[::page])
