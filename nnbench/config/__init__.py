"""Suite files -> validated `Suite` -> list of frozen `TrialSpec`s.

`load_suite(path)` reads and checks a suite file (every problem reported at
once, naming file, key path, given value and allowed values); `Suite.trials()`
expands it (grid × ablations × seeds).
"""

from nnbench.config.reference import PublishedResult, Reference
from nnbench.config.spec import AXES, Axis, TrialSpec
from nnbench.config.suite import (
    METRICS,
    Claim,
    Dimension,
    ReportOptions,
    Suite,
    SuiteError,
    Tune,
    apply_values,
    load_suite,
    parse_suite,
)

__all__ = ["AXES", "METRICS", "Axis", "Claim", "Dimension", "PublishedResult", "Reference",
           "ReportOptions", "Suite", "SuiteError", "TrialSpec", "Tune", "apply_values",
           "load_suite", "parse_suite"]
