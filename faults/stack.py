"""The fault suite's private stack: its own Kafka (one node or three), its own
PostgreSQL cluster, the four services and the two local providers, all on free ports
and under names of their own, so that killing a broker or a postmaster here never
touches the shared infrastructure other tests use at the same time.

Everything is started with the scripts `make run` uses (deploy/local/kafka.sh,
postgres.sh, services.sh), as separate processes: the providers (local SMTP and SMS)
are processes of their own and survive a service's kill; their records (the Maildir
and `sms/messages.jsonl`) are the ground truth of what reached a mailbox or a phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from services.kit.kafka import KafkaClient
from services.kit.kafka_acl import admin_for, apply_access, load_access
from services.kit.local_secrets import kafka_client, kafka_password
from tests.infra import ScriptError, run_local

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / ".local"
SERVICES = ("intake", "referral", "followup", "notifications")
PROVIDERS = ("smtp", "sms")
# A developer's shell may hold these for `make run`: never inherited by the stack.
_OWN_PREFIXES = ("ENLACE_", "KAFKA_", "DATABASE_URL")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _below_ephemeral() -> int:
    """The first port the kernel may hand out to an outgoing connection: a server
    port chosen below it cannot be taken by a client between the check and the bind."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 60000
    return low if low > 12000 else 60000


def free_ports(count: int, taken: set[int]) -> int:
    """The first of `count` consecutive loopback ports nobody listens on."""
    top = _below_ephemeral()
    for _ in range(500):
        base = random.randint(10000, top - count - 1)
        span = set(range(base, base + count))
        if not span & taken and all(_port_free(p) for p in span):
            taken |= span
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class Stack:
    """One private stack, named `name` (its Kafka instance `<name>-kafka`, its cluster
    `<name>-pg`, its services' state `.local/stacks/<name>`)."""

    def __init__(self, name: str = "faults", nodes: int = 1) -> None:
        if nodes not in (1, 3):
            raise ValueError(f"nodes={nodes}: expected 1 or 3")
        self.name, self.nodes = name, nodes
        self.kafka_instance, self.pg_instance = f"{name}-kafka", f"{name}-pg"
        taken: set[int] = set()
        # Node N listens on base + 2(N-1), its controller on base + 2(N-1) + 1.
        base = free_ports(2 * nodes, taken)
        self.kafka_ports = [base + 2 * i for i in range(nodes)]
        self.pg_port = free_ports(1, taken)
        # The operations service starts too (services.sh): a port of its own.
        self.ports = {n: free_ports(1, taken) for n in (*SERVICES, *PROVIDERS, "smtp_api", "ops")}
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
        self.env: dict[str, str] = {
            **inherited,
            "PYTHONUNBUFFERED": "1",
            "ENLACE_KAFKA_INSTANCE": self.kafka_instance,
            "ENLACE_KAFKA_NODES": str(nodes),
            "ENLACE_KAFKA_PORT": str(base),
            "ENLACE_KAFKA_CONTROLLER_PORT": str(base + 1),
            "ENLACE_PG_INSTANCE": self.pg_instance,
            "ENLACE_PG_PORT": str(self.pg_port),
            "ENLACE_STACK": name,
            # The run must not depend on Lima's clock: no quiet hours.
            "ENLACE_QUIET_HOURS_CHANNELS": "[]",
            **{f"ENLACE_{n.upper()}_PORT": str(p) for n, p in self.ports.items()},
        }
        if "ENLACE_PYTHON" in os.environ:
            self.env["ENLACE_PYTHON"] = os.environ["ENLACE_PYTHON"]
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.kafka_ports)
        self.state = LOCAL / "stacks" / name
        self.started = False

    # --- where things are ---------------------------------------------------------------

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def sms_log(self) -> Path:
        return self.state / "sms" / "messages.jsonl"

    @property
    def maildir(self) -> Path:
        return self.state / "mail"

    def kafka(self, principal: str = "admin") -> KafkaClient:
        return kafka_client(principal, self.bootstrap)

    def admin_dsn(self, database: str = "postgres") -> str:
        password = (LOCAL / "secrets" / "postgres" / "enlace_admin.password").read_text().strip()
        return f"postgresql://enlace_admin:{password}@127.0.0.1:{self.pg_port}/{database}"

    def node_of_port(self, port: int) -> int | None:
        return self.kafka_ports.index(port) + 1 if port in self.kafka_ports else None

    def logs(self) -> list[Path]:
        found = sorted((self.state / "logs").glob("*.log"))
        found += sorted((LOCAL / self.kafka_instance).glob("**/server.log"))
        found += [LOCAL / self.pg_instance / "postgres.log"]
        return [p for p in found if p.exists()]

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Kafka and PostgreSQL (at once), topics, ACLs, databases, then the services."""
        await asyncio.to_thread(self._remove_leftovers)
        self.started = True
        await asyncio.gather(
            asyncio.to_thread(self._start_kafka), asyncio.to_thread(self._start_postgres)
        )
        await asyncio.to_thread(self.script, "services.sh", "start", timeout=300)

    def _start_kafka(self) -> None:
        self.script("kafka.sh", "start", timeout=300)
        apply_access(admin_for(self.kafka()), load_access(), kafka_password)
        self.script("create_topics.py", "--bootstrap", self.bootstrap, timeout=120)

    def _start_postgres(self) -> None:
        self.script("postgres.sh", "start", timeout=120)
        self.script("postgres.sh", "createdbs", timeout=120)

    def stop(self, keep_logs: Path | None = None) -> None:
        """Stop everything this stack started; keep its logs in `keep_logs` if given;
        delete its state."""
        # A node left paused (SIGSTOP) would not stop on SIGTERM.
        for node in range(1, self.nodes + 1):
            paused = self.kafka_pid(node)
            if paused is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(paused, signal.SIGCONT)
        # Every process at once (services.sh stops them one after another), then the
        # broker and the cluster side by side: the state is deleted anyway.
        pids = [p for p in map(self.service_pid, (*SERVICES, *PROVIDERS)) if p is not None]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            with contextlib.suppress(RuntimeError):
                wait_gone(pid, timeout=20.0)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ScriptError):
            self.script("services.sh", "stop", timeout=120)
        with ThreadPoolExecutor(2) as pool:
            for done in [
                pool.submit(self.script, name, "stop", timeout=120)
                for name in ("kafka.sh", "postgres.sh")
            ]:
                with contextlib.suppress(ScriptError):
                    done.result()
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in self.logs():
                relative = log.relative_to(LOCAL)
                shutil.copy2(log, keep_logs / str(relative).replace("/", "__"))
        self._remove_state()
        self.started = False

    def _remove_leftovers(self) -> None:
        """A previous run of the same name killed before its clean-up."""
        if self.state.exists() or (LOCAL / self.kafka_instance).exists():
            self.stop()
        self._remove_state()

    def _remove_state(self) -> None:
        for path in (self.state, LOCAL / self.kafka_instance, LOCAL / self.pg_instance):
            shutil.rmtree(path, ignore_errors=True)
        for instance in (self.kafka_instance, self.pg_instance):
            for leftover in (LOCAL / "run").glob(f"{instance}*"):
                leftover.unlink(missing_ok=True)

    # --- the processes the faults act on ---------------------------------------------------

    def service_pid(self, service: str) -> int | None:
        """A service's or a provider's pid, if it runs."""
        try:
            pid = int((self.state / "run" / f"{service}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def kill_service(self, service: str) -> int:
        """SIGKILL, then wait until the process is gone; returns its pid."""
        pid = self.service_pid(service)
        if pid is None:
            raise RuntimeError(f"{service} is not running")
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
        return pid

    def start_services(self) -> None:
        """Start what is not running (services.sh skips the live ones) and wait until
        every service answers /readyz."""
        self.script("services.sh", "start", timeout=300)

    def script(self, name: str, *args: str, timeout: float = 300) -> str:
        """A deploy/local script in the stack's environment alone (nothing inherited)."""
        return run_local(name, *args, env=self.env, inherit=False, timeout_s=timeout)

    def kafka_pid(self, node: int) -> int | None:
        try:
            text = self.script("kafka.sh", "pid", "--node", str(node), timeout=30)
            pid = int(text.strip().splitlines()[-1])
        except (ScriptError, ValueError, IndexError):
            if self.nodes != 1:
                return None
            # kafka.sh without per-node commands: the single broker's pid file.
            try:
                pid = int((LOCAL / "run" / f"{self.kafka_instance}.pid").read_text().strip())
            except (OSError, ValueError):
                return None
        return pid if alive(pid) else None

    def kafka_start(self, node: int) -> None:
        self.script("kafka.sh", "start", "--node", str(node), timeout=300)

    def pg(self, command: str) -> str:
        """postgres.sh start|restart|kill|pid on this stack's cluster."""
        return self.script("postgres.sh", command, timeout=120)


def wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"pid {pid} still alive {timeout:.0f} s after SIGKILL")
        time.sleep(0.05)
