"""A RabbitMQ cluster of a chaos scenario's own: three nodes on loopback, started, clustered,
loaded with deploy/rabbitmq/definitions.json, and taken away with everything on them.

Nothing here touches the machine's RabbitMQ (rabbit@localhost, 5672), which other test runs
use: the nodes have names of their own (mh-chaos-N@localhost), AMQP ports 5681-5683 (their
distribution ports 25681-25683), their configuration, data and logs under one temporary
directory, and an Erlang cookie of their own in a HOME of their own, so that the rabbitmqctl
run here could not even reach the machine's node by a slip of a node name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from tests.support.workers import ROOT

DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
# Debian's /usr/sbin/rabbitmq-server and rabbitmqctl switch to the `rabbitmq` user and its HOME
# (and so its cookie, the machine node's); these are the scripts behind them.
PACKAGE_SCRIPTS = Path("/usr/lib/rabbitmq/bin")


def _script(name: str) -> str:
    packaged = PACKAGE_SCRIPTS / name
    if packaged.exists():
        return str(packaged)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install rabbitmq-server (scripts/bootstrap does)")
    return found


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Node:
    name: str  # mh-chaos-1@localhost
    port: int  # AMQP
    directory: Path

    @property
    def dist_port(self) -> int:
        return self.port + 20000  # RabbitMQ's own rule, said explicitly below

    @property
    def pid_file(self) -> Path:
        return self.directory / "pid"

    def pid(self) -> int | None:
        """The node's Erlang VM, if it runs; checked to be this node's and no other's."""
        try:
            pid = int(self.pid_file.read_text().strip())
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        mine = f"RABBITMQ_PID_FILE={self.pid_file}".encode()
        return pid if mine in environment else None


class RabbitCluster:
    def __init__(self, *, size: int = 3, first_port: int = 5681) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="mh-chaos-rabbitmq-"))
        self.home = self.base / "home"
        self.nodes = [
            Node(f"mh-chaos-{n}@localhost", first_port + n - 1, self.base / f"node{n}")
            for n in range(1, size + 1)
        ]
        self.killed: set[str] = set()

    # -- environment and commands ------------------------------------------------------------

    def _environment(self, node: Node | None = None) -> dict[str, str]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")},
            "HOME": str(self.home),  # the cookie of these nodes, for servers and rabbitmqctl
            # Not /etc/rabbitmq/rabbitmq-env.conf: that one names the machine's node.
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        if node is not None:
            env |= {
                "RABBITMQ_NODENAME": node.name,
                "RABBITMQ_NODE_PORT": str(node.port),
                "RABBITMQ_DIST_PORT": str(node.dist_port),
                "RABBITMQ_CONFIG_FILE": str(node.directory / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.directory / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(node.directory / "mnesia"),
                "RABBITMQ_LOG_BASE": str(node.directory / "log"),
                "RABBITMQ_PID_FILE": str(node.pid_file),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                    "-kernel inet_dist_use_interface {127,0,0,1}"
                ),
            }
        return env

    def ctl(self, node: Node, *arguments: str, timeout: float = 120) -> str:
        """rabbitmqctl against ``node`` (one of these, by construction: -n is always given)."""
        result = subprocess.run(
            [_script("rabbitmqctl"), "-q", "-n", node.name, *arguments],
            env=self._environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            command = f"rabbitmqctl -n {node.name} {' '.join(arguments)}"
            raise RuntimeError(f"{command}: {result.stderr or result.stdout}")
        return result.stdout

    def alive(self) -> list[Node]:
        return [node for node in self.nodes if node.name not in self.killed]

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> RabbitCluster:
        busy = [
            port for node in self.nodes for port in (node.port, node.dist_port) if _listening(port)
        ]
        if busy:
            raise RuntimeError(f"ports {busy} are taken: another cluster scenario running?")
        self.home.mkdir()
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
        (self.base / "rabbitmq-env.conf").write_text("")
        for node in self.nodes:
            node.directory.mkdir()
            (node.directory / "rabbitmq.conf").write_text(
                f"listeners.tcp.1 = 127.0.0.1:{node.port}\n"
            )
            (node.directory / "enabled_plugins").write_text("[].\n")
            # Into a file, not a pipe: the detached node would hold a pipe open for its lifetime.
            with (node.directory / "startup.log").open("wb") as log:
                subprocess.run(
                    [_script("rabbitmq-server"), "-detached"],
                    env=self._environment(node),
                    check=True,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=60,
                )
        for node in self.nodes:
            self.ctl(node, "wait", str(node.pid_file), "--timeout", "240", timeout=300)
        first, *others = self.nodes
        for node in others:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app", timeout=240)
        # Production's vhost, user, exchanges, quorum queues and policies: Mailhub's workers
        # must declare every queue exactly as these do, or fail.
        self.ctl(first, "import_definitions", str(DEFINITIONS))
        return self

    def url(self, *, user: str, password: str, vhost: str) -> str:
        """CELERY_BROKER_URL naming every node (`;`): clients fail over from one to the next."""
        return ";".join(
            f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{node.port}/"
            f"{quote(vhost, safe='')}"
            for node in self.nodes
        )

    def queues(self, vhost: str) -> list[dict]:
        """name, type, leader and online members of every queue, as a live node sees them."""
        output = self.ctl(
            self.alive()[0],
            "list_queues",
            "-p",
            vhost,
            "name",
            "type",
            "leader",
            "online",
            "--formatter",
            "json",
        )
        return json.loads(output) if output.strip() else []

    def elected(self, vhost: str, queue: str, *, since: datetime) -> datetime | None:
        """When a live node last became ``queue``'s leader after ``since``, from its log."""
        pattern = re.compile(
            rf"^(\S+ \S+) .*queue '{re.escape(queue)}' in vhost '{re.escape(vhost)}': "
            r"candidate -> leader"
        )
        moments = [
            at
            for node in self.alive()
            for line in (node.directory / "log" / f"{node.name}.log").read_text().splitlines()
            if (match := pattern.match(line)) and (at := datetime.fromisoformat(match[1])) > since
        ]
        return max(moments, default=None)

    def node(self, name: str) -> Node:
        [node] = [node for node in self.nodes if node.name == name]
        return node

    def kill(self, node: Node) -> None:
        """SIGKILL the node's Erlang VM: a machine that died, not a node that said goodbye."""
        pid = node.pid()
        if pid is None:
            raise RuntimeError(f"{node.name} is not running")
        os.kill(pid, signal.SIGKILL)
        self.killed.add(node.name)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # a big VM takes a moment to be torn down

    def stop(self, *, keep_logs_in: Path | None = None) -> None:
        """Stop every node (gently, then for sure) and delete their directory, the nodes' logs
        copied to ``keep_logs_in`` first: always safe to call, whatever start() reached."""
        for node in self.nodes:
            if node.pid() is None:
                continue
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.ctl(node, "stop", timeout=90)
        for node in self.nodes:
            if node.pid() is not None:
                self.kill(node)
        if keep_logs_in is not None:
            for node in self.nodes:
                if (node.directory / "log").is_dir():
                    target = keep_logs_in / f"rabbitmq-{node.name.partition('@')[0]}"
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(node.directory / "log", target)
        shutil.rmtree(self.base, ignore_errors=True)
