"""A cgroup per sandbox: memory (+swap) and process count capped for the sandbox as a whole,
v2 where the host has the memory and pids controllers there, else v1."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
import uuid
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAME = "rlscale-sandbox"


class Cgroup:
    """A cgroup for one sandbox, memory (+swap) and pids capped; v2 if the host has it, else v1."""

    def __init__(self, memory_bytes: int, max_pids: int):
        name = f"{CGROUP_NAME}/{uuid.uuid4().hex}"
        if _cgroup_v2():
            self.dirs = [CGROUP_ROOT / name]
            settings = {"memory.max": memory_bytes, "memory.swap.max": 0, "pids.max": max_pids}
        else:
            self.dirs = [CGROUP_ROOT / "memory" / name, CGROUP_ROOT / "pids" / name]
            settings = {"memory.limit_in_bytes": memory_bytes, "pids.max": max_pids}
            if (CGROUP_ROOT / "memory" / "memory.memsw.limit_in_bytes").exists():
                settings["memory.memsw.limit_in_bytes"] = memory_bytes
        try:
            for folder in self.dirs:
                folder.mkdir()
                for key, value in settings.items():
                    if (folder / key).exists():
                        (folder / key).write_text(str(value))
        except BaseException:
            self.remove()
            raise

    def wrap(self, command: list[str]) -> list[str]:
        """command, started inside this cgroup (a shell joins it, then execs the command)."""
        procs = [str(folder / "cgroup.procs") for folder in self.dirs]
        join = 'for f in "$@"; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; shift; done; shift'
        return ["/bin/sh", "-c", join + '; exec "$@"', "sh", *procs, "--", *command]

    def oom_killed(self) -> bool:
        events = self.dirs[0] / ("memory.events" if _cgroup_v2() else "memory.oom_control")
        with contextlib.suppress(OSError, ValueError):
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        return False

    def remove(self) -> None:
        for folder in self.dirs:
            for _ in range(200):
                try:
                    pids = (folder / "cgroup.procs").read_text().split()
                except FileNotFoundError:
                    break
                for pid in pids:  # normally none: the pid namespace died with its init
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy until the last process is reaped
                    time.sleep(0.005)


@functools.cache
def _cgroup_v2() -> bool:
    controllers = CGROUP_ROOT / "cgroup.controllers"
    return controllers.exists() and {"memory", "pids"} <= set(controllers.read_text().split())


def cgroup_problem() -> str | None:
    if _cgroup_v2():
        parents = [CGROUP_ROOT / CGROUP_NAME]
        with contextlib.suppress(OSError):
            (CGROUP_ROOT / "cgroup.subtree_control").write_text("+memory +pids")
    else:
        parents = [CGROUP_ROOT / "memory" / CGROUP_NAME, CGROUP_ROOT / "pids" / CGROUP_NAME]
        if not all(parent.parent.is_dir() for parent in parents):
            return "no cgroup memory and pids controllers (v1 or v2)"
    try:
        for parent in parents:
            parent.mkdir(exist_ok=True)
            if _cgroup_v2():
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
        Cgroup(64 << 20, 8).remove()  # a trial one
    except OSError as error:
        return f"cannot create cgroups under {parents[0].parent} ({error.strerror or error})"
    return None


@functools.cache
def cgroups_work() -> bool:
    return cgroup_problem() is None
