"""Flower adapters and the local TLS deployment (course_lib.deploy.apps, course_lib.deploy).

Fast tests run the ServerApp's loop against an in-process grid that hands every message
straight to the ClientApp, and must reproduce ``run_fedavg(engine="sequential")`` exactly.
One slow test (30-80 s on two busy cores) starts a real SuperLink and three SuperNodes
on 127.0.0.1 and checks TLS, loopback-only sockets, the result and that every process is gone.
Without the optional ``flower`` extra only the tests that need no Flower run.
"""

from __future__ import annotations

import itertools
import socket
import ssl
import stat
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from course_lib.deploy import _procs
from course_lib.deploy import apps as flower
from course_lib.deploy._tls import make_tls_files
from course_lib.fl.data import load_digits
from course_lib.fl.simulation import run_fedavg

try:
    import flwr  # noqa: F401

    HAVE_FLWR = True
except ImportError:
    HAVE_FLWR = False
needs_flwr = pytest.mark.skipif(not HAVE_FLWR, reason="flwr is not installed (optional "
                                "'flower' extra): Flower adapter tests skipped")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


# -- settings and data -----------------------------------------------------------------------
def test_missing_flower_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flwr", None)  # makes `import flwr` raise ImportError
    with pytest.raises(ImportError, match="`flower` extra"):
        flower.require_flwr()
    with pytest.raises(ImportError, match="`flower` extra"):
        flower.make_client_app()


def test_run_config_round_trip():
    config = flower.run_config(num_clients=4, rounds=3, batch_size=None, alpha=0.5, seed=7)
    assert config["partition"] == "dirichlet" and config["batch-size"] == 0
    settings = flower.settings_from_run_config(config)
    assert settings["batch_size"] is None and settings["alpha"] == 0.5
    assert settings["num_clients"] == 4 and settings["seed"] == 7


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(num_clients=0, rounds=1), "num_clients"),
    (dict(num_clients=2, rounds=0), "rounds"),
    (dict(num_clients=2, rounds=1, fraction=0.0), "fraction"),
    (dict(num_clients=2, rounds=1, partition="dirichlet"), "alpha"),
    (dict(num_clients=2, rounds=1, lr=-1.0), "lr"),
    (dict(num_clients=2, rounds=1, round_timeout=0), "round_timeout"),
])
def test_run_config_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        flower.run_config(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(), dict(alpha=0.3), dict(partition="shards")])
def test_client_indices_are_the_simulations_split(kwargs):
    config = flower.run_config(num_clients=6, rounds=1, seed=2, **kwargs)
    parts = flower.client_indices(flower.settings_from_run_config(config))
    from course_lib.fl.partition import label_counts

    history = run_fedavg(num_clients=6, rounds=1, seed=2, **kwargs)
    data = load_digits(seed=0)
    np.testing.assert_array_equal(label_counts(data.y_train, parts, num_classes=10),
                                  history.label_counts)


def test_node_data_round_trip_and_checks(tmp_path):
    X, y = torch.randn(5, 64), torch.arange(5)
    flower.save_node_data(tmp_path / "node.safetensors", X, y)
    X2, y2 = flower.load_node_data(tmp_path / "node.safetensors")
    assert torch.equal(X, X2) and torch.equal(y, y2)
    flower.save_node_data(tmp_path / "bad.safetensors", X, y.float())
    with pytest.raises(ValueError, match="int64 y"):
        flower.load_node_data(tmp_path / "bad.safetensors")


# -- the apps, in process --------------------------------------------------------------------
class InProcessGrid:
    """A Grid whose nodes are ClientApp calls in this process (what the SuperLink relays)."""

    def __init__(self, config, folder, *, fail_node=None, silent_node=None):
        from flwr.app import Context, RecordDict

        settings = flower.settings_from_run_config(config)
        data = load_digits(seed=0)
        self.app, self.ids, self.replies = flower.make_client_app(), itertools.count(), {}
        self.fail_node, self.silent_node, self.contexts = fail_node, silent_node, {}
        for k, indices in enumerate(flower.client_indices(settings, data)):
            path, ix = folder / f"node-{k}.safetensors", torch.from_numpy(indices)
            flower.save_node_data(path, data.X_train[ix], data.y_train[ix])
            node = 1000 - 7 * k  # node ids sort in the reverse order of partitions
            self.contexts[node] = Context(run_id=1, node_id=node, state=RecordDict(),
                                          node_config={"partition-id": k,
                                                       "data-file": str(path)},
                                          run_config=config)

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
        from flwr.app import Error, Message

        ids = []
        for message in messages:
            message_id = f"m{next(self.ids)}"
            message.metadata.__dict__["_message_id"] = message_id  # the SuperLink's job
            node = message.metadata.dst_node_id
            if node == self.fail_node:
                self.replies[message_id] = Message(Error(code=0, reason="disk full"),
                                                   reply_to=message)
            elif node != self.silent_node:
                self.replies[message_id] = self.app(message, self.contexts[node])
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids):
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]


@pytest.fixture
def task_identity(monkeypatch):
    if not HAVE_FLWR:
        pytest.skip("flwr is not installed (optional 'flower' extra)")
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_node_id", "_task_id"):  # set by Flower in a real ServerApp process
        monkeypatch.setattr(TaskIdentity, name, 1)


def _serve(config):
    from course_lib.deploy._app import load_history
    from course_lib.fl.partition import label_counts

    settings = flower.settings_from_run_config(config)
    data = load_digits(seed=0)
    counts = label_counts(data.y_train, flower.client_indices(settings, data), num_classes=10)
    return load_history(Path(config["result-dir"]), settings, counts, num_features=64)


@needs_flwr
@pytest.mark.parametrize("kwargs", [dict(), dict(alpha=0.5, fraction=0.6, local_epochs=2)])
def test_server_app_loop_equals_the_simulation(tmp_path, task_identity, kwargs):
    config = flower.run_config(num_clients=5, rounds=3, seed=3, result_dir=str(tmp_path / "r"),
                               **kwargs)
    flower._serve_fedavg(InProcessGrid(config, tmp_path), config)
    deployed = _serve(config)
    reference = run_fedavg(num_clients=5, rounds=3, seed=3, engine="sequential", **kwargs)
    assert deployed.test_accuracy == reference.test_accuracy
    assert [p.tolist() for p in deployed.participants] == \
        [p.tolist() for p in reference.participants]
    assert _same_weights(deployed.model, reference.model)  # bit for bit
    fast = run_fedavg(num_clients=5, rounds=3, seed=3, **kwargs)  # the batched engine
    assert abs(fast.final_accuracy - deployed.final_accuracy) <= 0.02


@needs_flwr
def test_a_failing_or_silent_node_stops_the_run(tmp_path, task_identity):
    config = flower.run_config(num_clients=3, rounds=1, round_timeout=0.5, connect_timeout=1)
    grid = InProcessGrid(config, tmp_path)
    grid.fail_node = grid.get_node_ids()[1]
    with pytest.raises(RuntimeError, match="disk full"):
        flower._serve_fedavg(grid, config)
    grid.fail_node, grid.silent_node = None, grid.get_node_ids()[2]
    with pytest.raises(TimeoutError, match="no train reply"):
        flower._serve_fedavg(grid, config)


@needs_flwr
def test_flower_can_load_our_component_references():
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp
    from flwr.supercore.object_ref import load_app, validate

    for ref, kind in (("course_lib.deploy.apps:client_app", ClientApp),
                      ("course_lib.deploy.apps:server_app", ServerApp)):
        assert validate(ref, check_module=True) == (True, None)  # what `flwr run` checks
        assert isinstance(load_app(ref, RuntimeError), kind)


# -- TLS and processes -----------------------------------------------------------------------
def test_tls_files_make_a_working_chain(tmp_path):
    files = make_tls_files(tmp_path)
    for path in (files.ca_certificate, files.server_certificate, files.server_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files.server_certificate, files.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(count):
        for _ in range(count):
            conn, _ = listener.accept()
            try:
                with server_context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, args=(2,), daemon=True)
    thread.start()
    trusting = ssl.create_default_context(cafile=files.ca_certificate)
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            trusting.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.recv(2) == b"ok"  # hostname (IP SAN) and chain verified
    stranger = ssl.create_default_context()  # the system's CAs do not know ours
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        stranger.wrap_socket(raw, server_hostname="127.0.0.1")
    thread.join(5)
    listener.close()


def test_stop_ends_a_process_and_its_children(tmp_path):
    script = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
              "'import time; time.sleep(60)']); time.sleep(60)")
    process = _procs.start([sys.executable, "-c", script], log=tmp_path / "log", env={},
                           cwd=tmp_path)
    deadline = time.monotonic() + 10
    while not psutil.Process(process.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = psutil.Process(process.pid).children()[0].pid
    assert sorted(_procs.stop([process], grace=2)) == sorted([process.pid, child])
    assert process.poll() is not None and not psutil.pid_exists(child)
    assert _procs.stop([process]) == []  # stopping twice is harmless


# -- the real deployment ---------------------------------------------------------------------
def _listening(pids):
    """The addresses on which these processes or their children accept connections."""
    addresses = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                addresses += [c.laddr for c in p.net_connections(kind="inet")
                              if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            pass
    return addresses


@needs_flwr
def test_deployment_on_loopback_with_tls_equals_the_simulation():
    from course_lib.deploy import LocalFederation

    rounds, nodes = 2, 3
    start = time.perf_counter()
    with LocalFederation(num_nodes=nodes, startup_timeout=60) as federation:
        pids = [p.pid for p in federation.processes.values()]
        addresses = _listening(pids)
        assert len(addresses) >= 1 + nodes and {a.ip for a in addresses} == {"127.0.0.1"}
        ca = ssl.create_default_context(cafile=federation.tls.ca_certificate)
        with socket.create_connection(("127.0.0.1", federation.port)) as raw, \
                ca.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            issuer = dict(x[0] for x in tls.getpeercert()["issuer"])
            assert issuer["commonName"] == "course_lib local CA"
        with socket.create_connection(("127.0.0.1", federation.port), timeout=5) as raw:
            raw.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP: refused
            try:
                answer = raw.recv(100)
            except (ConnectionResetError, TimeoutError):
                answer = b""
            assert not answer.startswith(b"HTTP/1.1 200")
        result = federation.run(rounds=rounds, seed=0, timeout=120)
    elapsed = time.perf_counter() - start
    gone = [pid for pid in [*pids, *result.pids.values()] if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert gone == []
    assert not federation.workdir.exists()  # certificates and the server key deleted
    reference = run_fedavg(num_clients=nodes, rounds=rounds, seed=0, engine="sequential")
    assert result.history.test_accuracy == reference.test_accuracy
    assert _same_weights(result.history.model, reference.model)
    assert abs(run_fedavg(num_clients=nodes, rounds=rounds, seed=0).final_accuracy
               - result.history.final_accuracy) <= 0.02
    print(f"\ndeployment {nodes} nodes x {rounds} rounds: {elapsed:.1f} s "
          f"(start-up {result.seconds['startup']:.1f} s, run {result.seconds['run']:.1f} s, "
          f"rounds {', '.join(f'{s:.1f}' for s in result.history.round_seconds)} s)")

