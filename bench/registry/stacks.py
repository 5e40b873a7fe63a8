"""The two arms' stacks: the distributed mode (``bench.scale.stack.Stack`` with 2
gateways and 2 processors, plus a projector serving the admin API, as
``tests/integration/test_flow_registry_distributed.py`` starts it) and the
embedded ``leadflow serve`` (``tests.support.server.ServerProcess``). Both read
the example flows from a copy, a sites file with the ``demo`` site, and an admin
key made for the run."""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.registry.core import assigned_partitions, owners
from bench.scale.stack import Stack
from services.catalog import EXAMPLE_FLOWS_DIR
from services.http_auth import hash_api_key, new_api_key
from tests.support.distributed import Service
from tests.support.server import ServerProcess

SITES = """sites:
  - id: demo
    origins: ["http://localhost:*", "http://127.0.0.1:*"]
"""


@dataclass
class Config:
    """Files and keys both arms use."""

    workdir: Path
    admin_key: str = field(default_factory=new_api_key)

    def env(self) -> dict[str, str]:
        flows = self.workdir / "flows"
        if not flows.exists():
            shutil.copytree(EXAMPLE_FLOWS_DIR, flows)
        sites = self.workdir / "sites.yaml"
        sites.write_text(SITES)
        return {
            "LEADFLOW_FLOWS_DIR": str(flows),
            "LEADFLOW_SITES_FILE": str(sites),
            "LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(self.admin_key),
            "LEADFLOW_STARTS_PER_MINUTE": "1000000",
            "LEADFLOW_RATE_PER_SECOND": "1000",
            "LEADFLOW_RATE_BURST": "1000",
        }


@dataclass
class Distributed:
    stack: Stack
    projector: Service | None = None

    @classmethod
    def start(cls, config: Config, partitions: int) -> Distributed:
        stack = Stack(
            config.workdir / "distributed",
            gateways=2,
            processors=2,
            partitions=partitions,
            max_connections=10_000,
            extra_env=config.env(),
            prefix=f"registry-{uuid.uuid4().hex[:8]}.",
        )
        stack.start()
        out = cls(stack)
        try:
            assert stack.cluster is not None
            projector = stack.cluster.projector()
            projector.env.update(stack.env())
            out.projector = projector
            print("starting the projector (admin API) ...", flush=True)
            projector.start().wait_ready(timeout=120.0)
        except BaseException:
            out.stop()
            raise
        return out

    @property
    def api(self) -> str:
        assert self.projector is not None
        return f"http://127.0.0.1:{self.projector.port}/api/v1"

    def gateways(self) -> dict[str, str]:
        return {s.name: s.ws_url for s in self.stack.gateway_services}

    def assignments(self) -> dict[str, list[list[int]]]:
        """Every assignment each processor logged, in order."""
        return {s.name: assigned_partitions(s.log_text()) for s in self.stack.processor_services}

    def settled_owners(self, timeout: float = 90.0, stable: float = 2.0) -> dict[int, str]:
        """Partition -> processor once each processor's last logged assignment covers
        every partition once and each holds at least one, unchanged for ``stable`` s."""
        deadline = time.monotonic() + timeout
        last: dict[int, str] | None = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            current = {n: a[-1] if a else [] for n, a in self.assignments().items()}
            try:
                found = owners(current, self.stack.partitions)
            except ValueError:
                found = None
            if found is not None and all(current.values()):
                if found != last:
                    last, since = found, time.monotonic()
                elif time.monotonic() - since >= stable:
                    return found
            else:
                last = None
            time.sleep(0.2)
        raise RuntimeError(f"processors' assignments did not settle: {self.assignments()}")

    def pids(self) -> dict[str, int]:
        out = self.stack.pids()
        if self.projector is not None and self.projector.proc is not None:
            out[self.projector.name] = self.projector.proc.pid
        return out

    def stop(self) -> None:
        if self.projector is not None:
            with contextlib.suppress(Exception):
                self.projector.stop()
        self.stack.stop()


def start_embedded(config: Config) -> ServerProcess:
    env = {**config.env(), "LEADFLOW_DELIVERY": "off"}
    return ServerProcess(config.workdir / "embedded-data", env=env).start(timeout=60.0)
