"""python -m course_lib: the per-round table, the figure, and argparse errors for bad values."""

from __future__ import annotations

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
    (["--nodes", "0"], "argument --nodes: must be in [1, 10000], got 0"),
    (["--nodes", "ten"], "argument --nodes: must be an integer"),
    (["--rounds", "-1"], "argument --rounds"),
    (["--alpha", "0"], "argument --alpha: must be in (0, inf]"),
    (["--fraction", "1.5"], "argument --fraction: must be in (0, 1], got 1.5"),
    (["--partition", "random"], "argument --partition: invalid choice"),
    (["--engine", "flower"], "argument --engine: invalid choice"),
    (["--batch-size", "0"], "argument --batch-size"),
    (["--plot", "out.bmpx"], "argument --plot: file type must be one of"),
    (["--plot", "no/such/folder/x.png"], "does not exist"),
    (["--partition", "iid", "--alpha", "0.5"], "`alpha` is only used with partition='dirichlet'"),
    (["--partition", "shards", "--nodes", "1000"], "`num_clients` * `shards_per_client`"),
    (["--dropout", "1"], "argument --dropout: must be in [0, 1), got 1"),
    (["--dropout", "-0.1"], "argument --dropout: must be in [0, 1)"),
    (["--dp-noise", "-1"], "argument --dp-noise: must be in [0, "),
    (["--dp-noise", "1", "--clip", "0"], "argument --clip: must be in (0, "),
    (["--dp-noise", "1", "--delta", "1"], "argument --delta: must be in (0, 1), got 1"),
    (["--clip", "0.1"], "argument --clip: only used with --dp-noise"),
    (["--delta", "1e-6"], "argument --delta: only used with --dp-noise"),
    (["--secure-agg", "--secagg-graph", "ring"], "argument --secagg-graph: invalid choice"),
    (["--secagg-graph", "sparse"], "argument --secagg-graph: only used with --secure-agg"),
    (["--secure-agg", "--fraction", "0.1"], "`secure_aggregation` needs at least 2 clients"),
])
def test_bad_values_are_argparse_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fedavg", "--no-progress", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


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


def test_too_many_dropouts_are_a_clear_error_not_a_wrong_sum(capsys):
    assert main(["fedavg", "--nodes", "10", "--rounds", "3", "--secure-agg", "--dropout", "0.5",
                 "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "error: round 1: secure aggregation cannot recover the sum" in captured.err
    assert "final test accuracy" not in captured.out
