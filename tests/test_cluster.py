"""Ray start-up: a run without `ray.address` starts its own Ray even when a cluster is running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running_cluster():
    """`ray start --head` as a user would run it (it registers itself as the machine's cluster);
    stopped by signalling its own process group, not `ray stop`, which would end every Ray here."""
    port = _free_port()
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the head writes its address once it is up
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and current.read_text().strip().endswith(str(port)):
            break
        time.sleep(0.5)
    else:
        os.killpg(head.pid, signal.SIGTERM)
        pytest.fail("ray start --head did not come up")
    yield f"127.0.0.1:{port}"
    os.killpg(head.pid, signal.SIGTERM)
    head.wait(timeout=60)


def test_a_run_without_an_address_starts_its_own_ray_beside_a_running_cluster(running_cluster):
    code = (
        "import json, ray; from rlscale.cluster import init_ray; init_ray(None, needed_cpus=3); "
        "print(json.dumps({'gcs': ray.get_runtime_context().gcs_address, "
        "'cpus': ray.cluster_resources().get('CPU')})); ray.shutdown()"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    started = json.loads(done.stdout.strip().splitlines()[-1])
    assert started["gcs"] != running_cluster  # its own instance, not the user's cluster
    assert started["cpus"] >= 3  # sized for the run's actors (the running cluster has 1 CPU)
