"""How long the widget lab takes to redraw, against the one-second goal (DESIGN.md).

Run: ``python benchmarks/bench_widgets.py``. Each case changes one control of a lab that has
already drawn once (so the centralised baseline is cached, as in a classroom), redraws it and
reports the
median of a few redraws, split into training and drawing, and its ratio to the goal.
"""

from __future__ import annotations

import statistics
import sys

from course_lib.widgets import fedavg_lab

GOAL_SECONDS = 1.0
CASES = {  # label -> the lab's settings
    "100 nodes x 50 rounds": dict(num_clients=100, rounds=50),
    "100 nodes x 50 rounds, DP": dict(num_clients=100, rounds=50, noise_multiplier=1.0,
                                      fraction=0.2),
    "1,000 nodes x 50 rounds": dict(num_clients=1000, rounds=50),
}


def main(repeats: int = 3) -> int:
    lab = fedavg_lab(num_clients=8, rounds=6)
    print(f"{'case':<28}{'train s':>9}{'draw s':>9}{'total s':>9}{'x goal':>8}")
    for label, settings in CASES.items():
        lab.update(**settings)  # first draw: caches the baseline, loads Opacus for DP
        totals, trains, draws = [], [], []
        for _ in range(repeats):
            lab.update(**settings)  # update() always retrains and redraws
            totals.append(lab.timings["total"])
            trains.append(lab.timings["train"])
            draws.append(lab.timings["draw"])
        total = statistics.median(totals)
        print(f"{label:<28}{statistics.median(trains):>9.3f}{statistics.median(draws):>9.3f}"
              f"{total:>9.3f}{total / GOAL_SECONDS:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
