"""The chapter-5 cost table: each protection's price relative to a plain FedAvg round.

- :mod:`~course_lib.costs.table`     the settings, the measured table and its plot
- :mod:`~course_lib.costs.measures`  one measurement per protection (time, bytes)
"""

from course_lib.costs.table import (
    FULL,
    GROUPS,
    QUICK,
    CostRow,
    CostSettings,
    CostTable,
    measure_costs,
    plot_costs,
)

__all__ = ["GROUPS", "CostSettings", "QUICK", "FULL", "CostRow", "CostTable", "measure_costs",
           "plot_costs"]
