"""Suite files -> validated `Suite` -> list of frozen `TrialSpec`s.

`load_suite(path)` reads and checks a suite file (every problem reported at once,
naming file, key path, given value and allowed values); `Suite.trials()` expands it
(grid × ablations × seeds). The parts, one module each:

- `loading`: bytes -> text -> YAML data (encodings, odd characters, YAML 1.2 scalars,
  merge keys, bounded aliases), `load_suite`, `parse_suite`;
- `sections`: every top-level key (`TOP_KEYS`) and the fixed-shape sections as
  pydantic models;
- `validate`: the checks, in order, up to the dry build;
- `dry`: the dry build of every configuration on tiny tensors;
- `expand`: `Suite`, configurations and trials;
- `tune`, `claims`: the `tune:` block and the `expect:` claims;
- `spec`: `TrialSpec` and the axes a suite can set (`AXES`);
- `sources`: the sources of randomness and the per-source seeds of `seeds:`;
- `errors`: `SuiteError`.
"""

from nnbench.config.claims import Claim
from nnbench.config.errors import SuiteError
from nnbench.config.expand import METRICS, ReportOptions, Suite, apply_values
from nnbench.config.loading import load_suite, parse_suite
from nnbench.config.reference import PublishedResult, Reference
from nnbench.config.spec import AXES, Axis, TrialSpec
from nnbench.config.tune import Dimension, Tune

__all__ = ["AXES", "METRICS", "Axis", "Claim", "Dimension", "PublishedResult", "Reference",
           "ReportOptions", "Suite", "SuiteError", "TrialSpec", "Tune", "apply_values",
           "load_suite", "parse_suite"]
