"""One timed training of the default suite's 24 trials in a process of its own, for
tests/benchmarks/test_load_speed.py: `python -m tests.benchmarks.load_child ENGINE EPOCHS
[--spinning]` prints the seconds the engine took. `--spinning` loads torch (and so OpenMP)
before nnbench can choose the wait policy: the OpenMP default, as before nnbench chose."""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import replace
from pathlib import Path


def main(argv: list[str]) -> None:
    engine_name, epochs = argv[0], int(argv[1])
    if "--spinning" in argv:  # OpenMP reads OMP_WAIT_POLICY when torch loads it
        importlib.import_module("torch")
    importlib.import_module("nnbench")  # sets the wait policy, then loads torch
    import torch

    from nnbench.config import load_suite
    from nnbench.train import CONTINUE, SerialEngine, build_parts
    from nnbench.train.stacked import StackedEngine

    class Quiet:
        def trial_started(self, spec: object) -> bool:
            return True

        def epoch_finished(self, spec: object, metrics: object) -> object:
            return CONTINUE

    cpu = torch.device("cpu")
    suite = load_suite(Path(__file__).resolve().parents[2] / "suites" / "default.yaml")
    trials = [replace(t, epochs=epochs) for t in suite.trials()]
    build_parts(trials[0], cpu)  # the data is generated outside the timing
    engine = (SerialEngine(cpu) if engine_name == "serial"
              else StackedEngine(cpu, population=trials))
    started = time.perf_counter()
    results = list(engine.run(trials, Quiet()))  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    assert {r.status for r in results} == {"finished"}, [r.status for r in results]
    print(f"{seconds:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
