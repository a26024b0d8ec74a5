"""Flower adapters and the local TLS deployment (course_lib.deploy.apps, course_lib.deploy).

Fast tests run the ServerApps (Flower's FedAvg strategy, and Flower's SecAgg+ workflow) against
an in-process grid that hands every message straight to the ClientApp; the first must match
``run_fedavg(engine="sequential")`` to 1e-6, the second to SecAgg+'s quantisation. Two slow
tests (30-90 s each on two busy cores) start a real SuperLink and SuperNodes on 127.0.0.1: one
checks TLS, loopback-only sockets, the result and that every process is gone; the other runs
twice in one user-given workdir and checks that no private key is left behind.
Without the optional ``flower`` extra only the tests that need no Flower run.
"""

from __future__ import annotations

import copy
import itertools
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from course_lib.deploy import _procs
from course_lib.deploy import protocol as flower
from course_lib.deploy._tls import make_tls_files
from course_lib.fl.aggregate import fedavg
from course_lib.fl.config import FedAvgConfig
from course_lib.fl.data import load_digits
from course_lib.fl.simulation import run_fedavg

try:
    import flwr  # noqa: F401

    HAVE_FLWR = True
except ImportError:
    HAVE_FLWR = False
ROOT = Path(__file__).resolve().parents[2]
needs_flwr = pytest.mark.skipif(not HAVE_FLWR, reason="flwr is not installed (optional "
                                "'flower' extra): Flower adapter tests skipped")


def _largest_gap(a: torch.nn.Module, b: torch.nn.Module) -> float:
    b_state = b.state_dict()
    return max(float((v - b_state[k]).abs().max()) for k, v in a.state_dict().items())


# -- settings and data -----------------------------------------------------------------------
def test_missing_flower_names_the_extra(monkeypatch):
    from course_lib.deploy import apps

    monkeypatch.setitem(sys.modules, "flwr", None)  # makes `import flwr` raise ImportError
    with pytest.raises(ImportError, match="`flower` extra"):
        flower.require_flwr()
    with pytest.raises(ImportError, match="`flower` extra"):
        apps.make_client_app()


def test_run_config_round_trip():
    config = FedAvgConfig(num_clients=4, rounds=3, batch_size=None, alpha=0.5, seed=7,
                          local_epochs=2, lr=0.1, shards_per_client=3, min_size=1)
    flat = flower.run_config(config)
    assert flat["partition"] == "dirichlet" and flat["batch-size"] == 0 and flat["alpha"] == 0.5
    assert all(isinstance(v, (int, float, str, bool)) for v in flat.values())  # TOML scalars
    back = flower.config_from_run_config(flat)
    assert back == config.replace(engine="sequential")  # every option survives the trip


@pytest.mark.parametrize(("config", "options", "message"), [
    (FedAvgConfig(num_clients=17, rounds=1), {}, r"`num_clients` must be an int in \[1, 16\]"),
    (FedAvgConfig(num_clients=2, rounds=1, dropout=0.2), {}, "`dropout` must be 0"),
    (FedAvgConfig(num_clients=4, rounds=1, secure_aggregation=True, fraction=0.5), {},
     r"`fraction` must be 1.0"),
    (FedAvgConfig(num_clients=2, rounds=1), dict(round_timeout=0), "round_timeout"),
])
def test_run_config_rejects_what_a_deployment_cannot_run(config, options, message):
    with pytest.raises(ValueError, match=message):
        flower.run_config(config, **options)
    with pytest.raises(TypeError, match="FedAvgConfig"):
        flower.run_config({"num_clients": 2, "rounds": 1})


@pytest.mark.parametrize("num_clients", [0, 17])
def test_deploy_fedavg_names_one_range_for_the_nodes(num_clients):
    from course_lib.deploy import deploy_fedavg

    with pytest.raises(ValueError, match=r"`num_clients` must be an int in \[1, 16\], got "
                                         f"{num_clients}"):
        deploy_fedavg(num_clients=num_clients, rounds=1)  # before any process starts


@pytest.mark.parametrize("kwargs", [dict(), dict(alpha=0.3), dict(partition="shards")])
def test_client_indices_are_the_simulations_split(kwargs):
    from course_lib.fl.partition import label_counts

    config = FedAvgConfig(num_clients=6, rounds=1, seed=2, **kwargs)
    parts = flower.client_indices(config)
    history = run_fedavg(config)
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


def test_estimate_grows_with_rounds_nodes_and_secure_aggregation():
    from course_lib.deploy import estimate_seconds

    base = FedAvgConfig(num_clients=2, rounds=1)
    assert estimate_seconds(base) < estimate_seconds(base.replace(rounds=5)) \
        < estimate_seconds(base.replace(rounds=5, num_clients=8))
    assert estimate_seconds(base) < estimate_seconds(base.replace(secure_aggregation=True))


@needs_flwr
def test_flower_secagg_params_follow_chapter_5():
    from course_lib.deploy.secagg_apps import flower_secagg_params

    assert flower_secagg_params(3, "complete") == (1.0, 2)  # all hold shares, majority
    assert flower_secagg_params(16, "sparse") == (1.0, 9)  # k >= n - 1: complete
    with pytest.raises(ValueError, match="graph"):
        flower_secagg_params(3, "ring")


# -- the apps, in process --------------------------------------------------------------------
class InProcessGrid:
    """A Grid whose nodes are ClientApp calls in this process (what the SuperLink relays)."""

    def __init__(self, config, folder, *, fail_node=None, silent_node=None, app=None):
        from flwr.app import Context, RecordDict

        from course_lib.deploy import apps

        c = flower.config_from_run_config(config)
        data = load_digits(seed=0)
        self.app = apps.make_client_app() if app is None else app
        self.ids, self.replies = itertools.count(), {}
        self.fail_node, self.silent_node, self.contexts = fail_node, silent_node, {}
        self.run = types.SimpleNamespace(run_id=1)
        for k, indices in enumerate(flower.client_indices(c, data)):
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
            elif node != self.silent_node:  # a copy, as if it had crossed the network
                self.replies[message_id] = self.app(copy.deepcopy(message), self.contexts[node])
            ids.append(message_id)
        return list(reversed(ids))  # replies need not come back in the order sent

    def pull_messages(self, message_ids):
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]

    def send_and_receive(self, messages, *, timeout=None):  # Flower's, without the 3 s sleep
        ids = self.push_messages(messages)
        return self.pull_messages(ids)


@pytest.fixture
def task_identity(monkeypatch):
    if not HAVE_FLWR:
        pytest.skip("flwr is not installed (optional 'flower' extra)")
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_node_id", "_task_id"):  # set by Flower in a real ServerApp process
        monkeypatch.setattr(TaskIdentity, name, 1)


def _history(config):
    from course_lib.deploy._app import load_history
    from course_lib.fl.partition import label_counts

    c = flower.config_from_run_config(config)
    data = load_digits(seed=0)
    counts = label_counts(data.y_train, flower.client_indices(c, data), num_classes=10)
    return load_history(Path(config["result-dir"]), c, counts, num_features=64)


@needs_flwr
@pytest.mark.parametrize("options", [dict(), dict(alpha=0.5, fraction=0.6, local_epochs=2)])
def test_flowers_fedavg_strategy_matches_the_simulation(tmp_path, task_identity, options):
    from course_lib.deploy import apps

    config = FedAvgConfig(num_clients=5, rounds=3, seed=3, **options)
    flat = flower.run_config(config, result_dir=str(tmp_path / "r"))
    apps._serve_fedavg(InProcessGrid(flat, tmp_path), flat)
    deployed = _history(flat)
    reference = run_fedavg(config, engine="sequential")
    assert [p.tolist() for p in deployed.participants] == \
        [p.tolist() for p in reference.participants]
    assert _largest_gap(deployed.model, reference.model) <= 1e-6  # Flower sums in float32
    np.testing.assert_allclose(deployed.test_accuracy, reference.test_accuracy, atol=1 / 450)
    assert deployed.config["engine"] == "flower" and deployed.initial_accuracy == \
        reference.initial_accuracy


@needs_flwr
def test_flowers_aggregate_is_fedavg_up_to_float32():
    """The weighted mean Flower's strategy computes, against our fedavg (the oracle here is
    the float64 sum): both within float32 rounding of it, neither bit-identical to the other."""
    from flwr.app import ArrayRecord, MetricRecord, RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    gen = torch.Generator().manual_seed(0)
    states = [{"w": torch.randn(200, 30, generator=gen), "b": torch.randn(30, generator=gen)}
              for _ in range(4)]
    sizes = [1, 7, 0, 300]
    records = [RecordDict({"arrays": ArrayRecord(torch_state_dict=s),
                           "metrics": MetricRecord({"num-examples": n})})
               for s, n in zip(states, sizes)]
    theirs = aggregate_arrayrecords(records, "num-examples").to_torch_state_dict()
    ours = fedavg(states, sizes)
    for key in ours:
        exact = sum(n * s[key].double() for s, n in zip(states, sizes)) / sum(sizes)
        assert theirs[key].dtype == ours[key].dtype == torch.float32
        assert float((theirs[key].double() - exact).abs().max()) <= 1e-6
        assert float((ours[key].double() - exact).abs().max()) <= \
            float((theirs[key].double() - exact).abs().max())  # one rounding, not many


@needs_flwr
def test_flowers_secagg_plus_gives_the_mean_to_quantisation(tmp_path, task_identity):
    from flwr.app import Context, RecordDict

    from course_lib.deploy import secagg_apps

    config = FedAvgConfig(num_clients=3, rounds=1, seed=1, secure_aggregation=True)
    flat = flower.run_config(config, result_dir=str(tmp_path / "r"))
    grid = InProcessGrid(flat, tmp_path, app=secagg_apps.make_client_app())
    server = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=flat)
    secagg_apps._serve_secagg(grid, server)
    deployed = _history(flat)
    plain = run_fedavg(config, secure_aggregation=False, engine="sequential")
    gap = _largest_gap(deployed.model, plain.model)
    assert 0 < gap <= 1e-4  # quantised (so not exact), but close: the step is 3.8e-6
    assert deployed.config["secagg_plus"]["threshold"] == 2
    assert [p.tolist() for p in deployed.participants] == [[0, 1, 2]]


@needs_flwr
def test_a_failing_or_silent_node_stops_the_run(tmp_path, task_identity):
    from course_lib.deploy import apps

    flat = flower.run_config(FedAvgConfig(num_clients=3, rounds=1), round_timeout=0.5,
                             connect_timeout=1)
    grid = InProcessGrid(flat, tmp_path)
    grid.fail_node = grid.get_node_ids()[1]
    with pytest.raises(RuntimeError, match="disk full"):
        apps._serve_fedavg(grid, flat)
    grid.fail_node, grid.silent_node = None, grid.get_node_ids()[2]
    with pytest.raises(TimeoutError, match="no train reply"):
        apps._serve_fedavg(grid, flat)


@needs_flwr
def test_flower_can_load_our_component_references():
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp
    from flwr.supercore.object_ref import load_app, validate

    for module in ("course_lib.deploy.apps", "course_lib.deploy.secagg_apps"):
        for ref, kind in ((f"{module}:client_app", ClientApp),
                          (f"{module}:server_app", ServerApp)):
            assert validate(ref, check_module=True) == (True, None)  # what `flwr run` checks
            assert isinstance(load_app(ref, RuntimeError), kind)


def test_secagg_client_module_does_not_import_torch():
    """The three key-exchange stages of SecAgg+ start a ClientApp process each; they must
    not pay for `import torch` (measured: seconds per process on a busy machine)."""
    code = ("import sys; import course_lib.deploy.secagg_apps as m; m.make_client_app(); "
            "print('torch' in sys.modules)")
    if not HAVE_FLWR:
        pytest.skip("flwr is not installed (optional 'flower' extra)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "False", out.stderr


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
def test_deployment_on_loopback_with_tls_matches_the_simulation():
    from course_lib.deploy import LocalFederation

    config = FedAvgConfig(num_clients=3, rounds=2, seed=0)
    start = time.perf_counter()
    with LocalFederation(num_nodes=config.num_clients, startup_timeout=120) as federation:
        pids = [p.pid for p in federation.processes.values()]
        addresses = _listening(pids)
        assert len(addresses) >= 1 + config.num_clients
        assert {a.ip for a in addresses} == {"127.0.0.1"}
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
        result = federation.run(config, timeout=600)  # generous: CI machines are busy
    elapsed = time.perf_counter() - start
    gone = [pid for pid in [*pids, *result.pids.values()] if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert gone == []
    assert not federation.workdir.exists()  # certificates and the server key deleted
    reference = run_fedavg(config, engine="sequential")
    assert _largest_gap(result.history.model, reference.model) <= 1e-6
    np.testing.assert_allclose(result.history.test_accuracy, reference.test_accuracy,
                               atol=1 / 450)
    print(f"\ndeployment {config.num_clients} nodes x {config.rounds} rounds: {elapsed:.1f} s "
          f"(start-up {result.seconds['startup']:.1f} s, run {result.seconds['run']:.1f} s, "
          f"rounds {', '.join(f'{s:.1f}' for s in result.history.round_seconds)} s)")


@needs_flwr
def test_a_given_workdir_keeps_no_key_and_serves_a_second_run(tmp_path):
    """Issue 12: with workdir=..., the TLS server key used to stay on disk, and a second run
    in the same folder failed with FileExistsError."""
    from course_lib.deploy import deploy_fedavg

    config = FedAvgConfig(num_clients=2, rounds=1, seed=4)
    keys = []
    for _ in range(2):
        run = deploy_fedavg(config, workdir=tmp_path, timeout=600)
        keys.append(sorted(p.name for p in tmp_path.rglob("*.key")))
        assert not (tmp_path / "tls").exists()
        assert (tmp_path / "superlink.log").exists()  # the logs you asked to keep are there
    assert keys == [[], []]
    assert _largest_gap(run.history.model, run_fedavg(config, engine="sequential").model) \
        <= 1e-6


# -- the command line (no processes: the deployment itself is replaced) -------------------------
@pytest.mark.parametrize(("argv", "expected"), [
    (["--nodes", "0"], "argument --nodes: must be an integer in [1, 16], got 0"),
    (["--nodes", "17"], "argument --nodes: must be an integer in [1, 16], got 17"),
    (["--rounds", "abc"], "argument --rounds: must be an integer, got 'abc'"),
    pytest.param(["--nodes", "4", "--fraction", "0.5", "--secure-agg"], "--fraction must be 1.0",
                 marks=needs_flwr),  # checked once Flower is there to run SecAgg+
])
def test_cli_names_the_flag_and_its_range(argv, expected, capsys):
    from course_lib.deploy.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and expected in err
    assert "usage:" not in err and len(err.splitlines()) == 2  # the error, then where help is


@needs_flwr
@pytest.mark.parametrize("verbose", [False, True])
def test_cli_hides_flowers_own_lines_unless_verbose(monkeypatch, capsys, verbose):
    import course_lib.deploy as deploy
    from course_lib.deploy.__main__ import main

    flower_lines = ["Using SuperLink: course (127.0.0.1:5)", "Successfully started run 1",
                    "Successfully installed course-fedavg to /tmp/x/apps/course-fedavg",
                    "INFO :      [ROUND 1/1]"]
    ours = ["round  accuracy     loss  clients  time (s)", "    1    0.8556   0.6430        2"]

    def fake_deploy(config, *, timeout, on_line):
        for line in flower_lines + ours:
            on_line(line)
        history = types.SimpleNamespace(round_seconds=[7.0], final_accuracy=0.8556)
        return types.SimpleNamespace(history=history, pids={"superlink": 1},
                                     seconds=dict(startup=1.0, run=2.0, stop=0.5, total=3.5))

    monkeypatch.setattr(deploy, "deploy_fedavg", fake_deploy)
    assert main(["--nodes", "2", "--rounds", "1"] + ["--verbose"] * verbose) == 0
    out = capsys.readouterr().out
    assert all(line in out for line in ours)
    assert all((line in out) == verbose for line in flower_lines)
    assert "Expect about" in out and "imports Flower and PyTorch" in out  # said before it runs
