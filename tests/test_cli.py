"""python -m course_lib: the per-round table, the figure, and argparse errors for bad values."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _python_m(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course_lib", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _table_rows(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if line.strip()[:1].isdigit()]


def test_help_lists_the_subcommands():
    result = _python_m("--help")
    assert result.returncode == 0
    assert "fedavg" in result.stdout and "<command>" in result.stdout


def test_fedavg_prints_a_table_a_progress_bar_and_saves_a_plot(tmp_path):
    png = tmp_path / "run.png"
    result = _python_m("fedavg", "--nodes", "10", "--rounds", "20", "--alpha", "0.5",
                       "--plot", str(png), "--progress")
    assert result.returncode == 0, result.stderr
    rows = _table_rows(result.stdout)
    assert [int(r[0]) for r in rows] == list(range(1, 21))
    assert all(0 <= float(r[1]) <= 1 and r[3] == "10" for r in rows)
    assert "10 clients, dirichlet alpha=0.5, 20 rounds" in result.stdout
    final = [ln for ln in result.stdout.splitlines() if ln.startswith("final test accuracy")]
    assert len(final) == 1 and float(final[0].split()[3]) == float(rows[-1][1])
    assert float(rows[-1][1]) >= 0.85
    assert "fedavg" in result.stderr and "20/20" in result.stderr  # tqdm, on stderr only
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert f"figure saved to {png}" in result.stdout


def test_main_in_process(capsys):
    assert main(["fedavg", "--nodes", "4", "--rounds", "3", "--partition", "shards",
                 "--epochs", "2", "--batch-size", "all", "--fraction", "0.5", "--seed", "3",
                 "--engine", "sequential", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    rows = _table_rows(out)
    assert len(rows) == 3 and all(r[3] == "2" for r in rows)  # C=0.5 of 4 clients
    assert "shards" in out and "E=2, B=all" in out and "engine=sequential" in out
    assert err == ""


@pytest.mark.parametrize("args, message", [
    (["--nodes", "0"], "argument --nodes: `num_clients` must be an int in [1, 10000], got 0"),
    (["--nodes", "ten"], "argument --nodes: must be an integer, got 'ten'"),
    (["--rounds", "-1"], "argument --rounds: `rounds` must be an int in [1, 10000], got -1"),
    (["--alpha", "0"], "argument --alpha: `alpha`"),
    (["--fraction", "1.5"], "argument --fraction: `fraction` must be"),
    (["--partition", "random"], "argument --partition: `partition` must be one of"),
    (["--engine", "flower"], "argument --engine: `engine` must be one of"),
    (["--batch-size", "0"], "argument --batch-size: `batch_size`"),
    (["--lr", "0"], "argument --lr: `lr` must be a positive finite number"),
    (["--seed", "-1"], "argument --seed: `seed` must be an int"),
    (["--target", "2"], "argument --target: must be in (0, 1], got 2"),
    (["--plot", "out.bmpx"], "argument --plot: file type must be one of"),
    (["--plot", "no/such/folder/x.png"], "does not exist"),
    (["--partition", "iid", "--alpha", "0.5"], "`alpha` is only used with partition='dirichlet'"),
    (["--partition", "shards", "--nodes", "1000"], "`num_clients` * `shards_per_client`"),
    (["--dropout", "1"], "argument --dropout: `dropout` must be a fraction in [0, 1)"),
    (["--dropout", "-0.1"], "argument --dropout: `dropout` must be a fraction in [0, 1)"),
    (["--dp-noise", "-1"], "argument --dp-noise: `noise_multiplier`"),
    (["--dp-noise", "1", "--clip", "0"], "argument --clip: `max_norm`"),
    (["--dp-noise", "1", "--delta", "1"], "argument --delta: `delta`"),
    (["--clip", "0.1"], "argument --clip: only used with --dp-noise"),
    (["--delta", "1e-6"], "argument --delta: only used with --dp-noise"),
    (["--secure-agg", "--secagg-graph", "ring"], "argument --secagg-graph: `secagg_graph` must"),
    (["--secagg-graph", "sparse"], "argument --secagg-graph: only used with --secure-agg"),
    (["--secure-agg", "--fraction", "0.1"], "`secure_aggregation` needs at least 2 clients"),
])
def test_bad_values_are_one_line_and_a_hint(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fedavg", "--no-progress", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    lines = err.splitlines()
    assert len(lines) == 2 and "usage:" not in err, err              # no usage block
    assert lines[0].startswith("python -m course_lib fedavg: error: ")
    assert lines[1] == "hint: `python -m course_lib fedavg --help` lists the options and " \
                       "their ranges"


def test_the_help_lists_what_fedavgconfig_accepts():
    from course_lib import cli
    from course_lib.fl import config
    from course_lib.fl.partition import resolve_partition
    from course_lib.secagg import GRAPHS

    assert cli.ENGINES == config.ENGINES and cli.GRAPHS == GRAPHS
    for name in cli.PARTITIONS:
        assert resolve_partition(name, 0.5 if name == "dirichlet" else None) == name
    assert set(cli.FLAGS) - {"epochs", "delta", "max_norm", "noise_multiplier"} <= \
        {f.name for f in dataclasses.fields(config.FedAvgConfig)}


@pytest.mark.parametrize("graph, dropout, threshold", [
    ("complete", "0.9", "t = 6 survivors of the 10 clients"),
    ("complete", "0.5", "t = 6 survivors of the 10 clients"),
    ("sparse", "0.8", "t = 41 survivors in a typical neighbourhood of 81 clients"),
])
def test_too_many_dropouts_for_secure_aggregation_are_refused_before_the_run(
        graph, dropout, threshold, capsys):
    nodes = "10" if graph == "complete" else "100"
    with pytest.raises(SystemExit) as exit_info:
        main(["fedavg", "--nodes", nodes, "--rounds", "3", "--secure-agg", "--secagg-graph",
              graph, "--dropout", dropout, "--no-progress"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert f"argument --dropout: secure aggregation needs at least {threshold}" in captured.err
    assert "or drop --secure-agg" in captured.err
    assert captured.out == ""                                           # nothing ran


def test_the_largest_refused_dropout_would_really_fail():
    """The refusal agrees with the protocol: 0.4 of 10 runs, 0.5 (refused) cannot."""
    from course_lib.errors import CourseLibError
    from course_lib.fl.simulation import run_fedavg

    assert run_fedavg(num_clients=10, rounds=1, secure_aggregation=True, dropout=0.4)
    with pytest.raises(CourseLibError, match="cannot recover the sum"):
        run_fedavg(num_clients=10, rounds=1, secure_aggregation=True, dropout=0.5)


def test_more_clients_than_images_warns_before_running():
    result = _python_m("fedavg", "--nodes", "2000", "--rounds", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "warning: 2,000 clients share 1,347 training images, so at least 653 of them hold " \
           "no data" in result.stderr
    assert result.stdout.startswith("FedAvg on digits: 2000 clients")   # the warning came first
    quiet = _python_m("fedavg", "--nodes", "1347", "--rounds", "1", "--no-progress")
    assert "warning" not in quiet.stderr


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "<command>" in capsys.readouterr().err


def test_dp_prints_epsilon_per_round_and_at_the_end(capsys):
    from course_lib.dp import epsilon

    assert main(["fedavg", "--nodes", "20", "--rounds", "3", "--fraction", "0.5", "--dp-noise",
                 "1.5", "--clip", "0.2", "--delta", "1e-4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "DP z=1.5 S=0.2 delta=0.0001" in out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("round"))
    assert header.split()[:5] == ["round", "accuracy", "loss", "clients", "epsilon"]
    expected = [epsilon(noise_multiplier=1.5, sample_rate=0.5, steps=r, delta=1e-4)
                for r in (1, 2, 3)]
    assert [float(row[4]) for row in _table_rows(out)] == \
        pytest.approx(expected, rel=1e-2)  # printed to 3 significant digits
    assert f"privacy: (epsilon, delta) = ({expected[-1]:.4g}, 0.0001) for a client after 3 " \
        f"rounds at sampling rate q=0.5" in out


def test_secure_aggregation_with_dropouts_prints_its_cost(capsys):
    assert main(["fedavg", "--nodes", "10", "--rounds", "2", "--secure-agg", "--secagg-graph",
                 "sparse", "--dropout", "0.2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "secure aggregation (sparse graph), dropout=0.2" in out
    rows = _table_rows(out)
    assert len(rows) == 2 and all(row[3] == "10" and row[4] == "2" for row in rows)  # dropped
    assert "secure aggregation: sparse graph" in out and "ms CPU per round" in out


def test_a_failed_run_is_an_error_line_and_exit_1(capsys, monkeypatch):
    from course_lib.errors import TooManyDropoutsError
    from course_lib.fl import simulation

    def unlucky(*args, **kwargs):
        raise TooManyDropoutsError("round 1: secure aggregation cannot recover the sum")

    monkeypatch.setattr(simulation, "run_fedavg", unlucky)
    assert main(["fedavg", "--nodes", "10", "--rounds", "3", "--secure-agg", "--dropout", "0.2",
                 "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "error: round 1: secure aggregation cannot recover the sum" in captured.err
    assert "final test accuracy" not in captured.out
