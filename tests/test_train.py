"""The shared trainer: determinism, divergence, failures, device-resident data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nnbench import registry, seeding, train
from nnbench.config import TrialSpec, load_suite, parse_suite
from nnbench.train import build_parts, serial, train_trial
from tests.conftest import REPO, Quiet

CPU = torch.device("cpu")
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                 "epoch_seconds", "gap_loss", "gap_accuracy", "grad_norm.layer1",
                 "grad_norm.layer2", "dead_fraction", "weight_sparsity")


@pytest.fixture
def spec(write_suite: Callable[..., Path]) -> TrialSpec:
    return load_suite(write_suite(epochs=3)).base


def test_same_spec_gives_bitwise_identical_history_and_weights(spec: TrialSpec) -> None:
    first, second = train_trial(spec, CPU), train_trial(spec, CPU)
    assert first.status == second.status == "finished"
    strip = [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in first.history]
    assert strip == [{k: v for k, v in h.items() if k != "epoch_seconds"}
                     for h in second.history]
    assert first.final == second.final
    assert first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 16


def test_changing_only_the_seed_changes_the_results(spec: TrialSpec) -> None:
    base, other = train_trial(spec, CPU), train_trial(replace(spec, seed=1), CPU)
    assert base.fingerprint != other.fingerprint
    assert [h["train_loss"] for h in base.history] != [h["train_loss"] for h in other.history]


def test_history_has_every_epoch_metric(spec: TrialSpec) -> None:
    result = train_trial(spec, CPU)
    assert [h["epoch"] for h in result.history] == [1.0, 2.0, 3.0]
    for epoch in result.history:
        assert set(EPOCH_METRICS) <= set(epoch)
        assert 0.0 <= epoch["val_accuracy"] <= 1.0
        assert epoch["lr"] == 0.05
    assert set(result.final) == {"test_loss", "test_accuracy"}
    assert result.num_params == 40 * 16 + 16 + 16 * 10 + 10


def test_training_learns_something(spec: TrialSpec) -> None:
    result = train_trial(replace(spec, epochs=15), CPU)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0]
    assert result.final["test_accuracy"] > 0.2  # chance is 0.1


def test_caller_rng_state_is_left_alone(spec: TrialSpec) -> None:
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    train_trial(spec, CPU)
    assert torch.equal(torch.get_rng_state(), before)


def test_non_finite_loss_stops_the_trial_as_diverged(spec: TrialSpec) -> None:
    exploding = registry.resolve("optimizer", {"name": "sgd", "lr": 1e12, "momentum": 0.9})
    result = train_trial(replace(spec, optimizer=exploding, epochs=5), CPU)
    assert result.status == "diverged"
    assert result.diverged_epoch is not None
    assert result.diverged_epoch <= 5
    assert len(result.history) == result.diverged_epoch
    assert f"at epoch {result.diverged_epoch}" in result.reason
    assert "nan" in result.reason or "inf" in result.reason


def test_an_exception_becomes_a_failed_result(spec: TrialSpec,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_spec: TrialSpec, _device: torch.device) -> None:
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(train.build, "build_parts", broken)
    result = train_trial(spec, CPU)
    assert result.status == "failed"
    assert "RuntimeError: out of cheese" in result.reason
    assert result.fingerprint == ""


def test_keyboard_interrupt_becomes_a_killed_result_with_epochs_so_far(spec: TrialSpec) -> None:
    def interrupt(_spec: TrialSpec, metrics: dict[str, float]) -> train.Decision:
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt
        return train.CONTINUE

    result = train_trial(spec, CPU, on_epoch=interrupt)
    assert result.status == "killed"
    assert len(result.history) == 2
    assert "interrupted" in result.reason


def test_metrics_are_read_from_the_device_once_per_epoch(
        spec: TrialSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    """No `.item()` in the hot loop: one `.tolist()` per epoch plus one for the test split."""
    calls = {"item": 0, "tolist": 0}
    original_item, original_tolist = torch.Tensor.item, torch.Tensor.tolist

    def item(self: torch.Tensor) -> object:
        calls["item"] += 1
        return original_item(self)

    def tolist(self: torch.Tensor) -> object:
        calls["tolist"] += 1
        return original_tolist(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    result = train_trial(spec, CPU)
    assert result.status == "finished"
    assert calls == {"item": 0, "tolist": spec.epochs + 1}


def test_split_is_seeded_and_data_lives_on_the_device(spec: TrialSpec) -> None:
    data = registry.build("dataset", spec.dataset, seed=0, device=CPU)
    again = registry.build("dataset", spec.dataset, seed=0, device=CPU)
    other = registry.build("dataset", spec.dataset, seed=1, device=CPU)
    assert data.sizes() == {"train": 384, "val": 96, "test": 120}  # 600 examples, 80/20, val 20%
    assert torch.equal(data.x_val, again.x_val)
    assert not torch.equal(data.x_val, other.x_val)
    assert torch.equal(data.x_test, other.x_test)  # the test split is the dataset's own
    assert data.x_train.device == CPU
    assert data.x_train.dtype == torch.float32
    assert data.input_shape == (40,)
    assert data.num_classes == 10


def test_the_training_split_is_gathered_only_to_fit_normalize(
        spec: TrialSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    """`x_train` copies the split's examples (on a GPU, 169 MB for an MNIST-shaped set):
    preparing a trial reads it only where a normalize computes its statistics."""
    from nnbench.components.augmentations import Normalize
    from nnbench.data import TensorData
    from nnbench.train.build import prepare_data

    gathered: list[int] = []
    x_train = vars(TensorData)["x_train"].fget

    def counted(data: TensorData) -> torch.Tensor:
        gathered.append(1)
        return x_train(data)

    monkeypatch.setattr(TensorData, "x_train", property(counted))
    prepare_data(spec, CPU)
    assert gathered == []
    normalized = replace(spec, augmentation=(registry.resolve("augmentation", "normalize"),))
    _, (normalize,) = prepare_data(normalized, CPU)
    assert gathered == [1]
    assert isinstance(normalize, Normalize) and normalize.mean is not None
    data = registry.build("dataset", spec.dataset, seed=spec.seed_of("split"), device=CPU)
    assert torch.equal(normalize.mean.flatten(), x_train(data).mean(0))


def test_cuda_request_without_a_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="device 'cuda' requested but"):
        train.resolve_device("cuda")
    assert train.resolve_device("auto") == CPU


def test_a_cublas_workspace_that_breaks_the_bitwise_repeat_is_refused_before_training(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:2")
    message = ("CUBLAS_WORKSPACE_CONFIG is ':4096:2' in the environment, but deterministic "
               "cuBLAS (bitwise-repeatable training) needs one of :4096:8, :16:8; unset it "
               "(nnbench sets :4096:8) or set one of those")
    for name in ("cuda", "cuda:0", "auto"):
        with pytest.raises(ValueError, match="CUBLAS_WORKSPACE_CONFIG") as raised:
            train.resolve_device(name)
        assert str(raised.value) == message
    assert train.resolve_device("cpu") == CPU  # the CPU never calls cuBLAS
    for accepted in (":16:8", ":4096:8"):
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", accepted)
        assert train.resolve_device("auto") == torch.device("cuda")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    assert train.resolve_device("cuda") == torch.device("cuda")


def test_a_trials_rng_reseeds_the_cpu_and_its_own_device_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial on the CPU (and the dry build, a stacked group's setup, the export) seeded
    with `torch.manual_seed`, which also reseeds every GPU's generator: restored for the
    trial's own device only, so another GPU's stream was left reseeded."""
    from nnbench import seeding

    reseeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    before = torch.random.get_rng_state()
    with seeding.trial_rng(3, CPU):
        first = torch.rand(3)
    with seeding.trial_rng(3, CPU):
        again = torch.rand(3)
    assert torch.equal(first, again)
    assert torch.equal(torch.random.get_rng_state(), before)  # the CPU's, restored
    assert reseeded == []


def test_evaluate_on_a_gpu_refuses_a_cublas_workspace_it_would_fail_under(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`evaluate` runs deterministic like training (its metrics compare with those logged),
    so cuBLAS would raise at its first matrix product: a traceback after the checkpoint was
    read. It is refused with the training's message, before anything is read."""
    from nnbench import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:2")
    store = f"sqlite:///{tmp_path / 'none.db'}"
    assert cli.main(["evaluate", "0" * 32, "--device", "cuda", "--tracking-uri", store]) == 2
    assert "--device 'cuda': CUBLAS_WORKSPACE_CONFIG is ':4096:2' in the environment" in \
        capsys.readouterr().err


@pytest.mark.parametrize(("model", "activation", "loss", "dataset"), [
    ("{name: mlp, hidden: [8, 8]}", "relu", "cross_entropy", "{name: mnist1d, num_samples: 600}"),
    ("{name: mlp, hidden: [8]}", "tanh", "cross_entropy", "{name: mnist1d, num_samples: 600}"),
    ("logistic", "relu", "cross_entropy", "{name: mnist1d, num_samples: 600}"),
    ("{name: mlp, hidden: [8]}", "identity", "mse", "diabetes"),
])
def test_produced_metrics_are_what_the_engine_logs(model: str, activation: str, loss: str,
                                                   dataset: str) -> None:
    """What validation promises a claim can use (`produced_metrics`) is what a trial logs."""
    from nnbench.config import parse_suite

    spec = parse_suite(f"name: m\ntask: {{dataset: {dataset}, model: {model}, loss: {loss}}}\n"
                       f"fixed: {{activation: {activation}, optimizer: sgd, epochs: 1, "
                       f"batch_size: 64}}\n").base
    result = train_trial(spec, CPU)
    assert result.status == "finished", result.reason
    logged = set(result.history[0]) | set(result.final)
    logged -= {"lr", "epoch_seconds", "epoch"}
    data = registry.build("dataset", spec.dataset, seed=0, device=CPU)
    objective = registry.build("loss", spec.loss)
    built = train.build_model(spec, data.input_shape,
                              objective.num_outputs(data.num_classes, data.target_dim))
    act = type(registry.build("activation", spec.activation))
    promised = train.produced_metrics(
        spec, weight_layers=len(train.weight_layers(built)),
        has_activations=any(isinstance(m, act) for m in built.modules()))
    assert promised == logged


def test_thread_policy_gives_stacked_workers_their_cores_at_most_omp_num_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from nnbench.train import engine

    monkeypatch.setattr(engine, "cpu_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert engine.default_threads("stacked", CPU) == 8
    assert engine.default_threads("stacked", CPU, workers=3) == 2
    assert engine.default_threads("serial", CPU) == 1
    assert engine.default_threads("stacked", torch.device("cuda")) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a shared machine's (or Slurm job's) limit
    assert engine.default_threads("stacked", CPU) == 2
    assert engine.default_threads("stacked", CPU, workers=8) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "16")  # more than there are: the cores
    assert engine.default_threads("stacked", CPU) == 8
    for ignored in ("", "0", "two", "-1", "²", "①"):  # what torch and OpenMP ignore too
        monkeypatch.setenv("OMP_NUM_THREADS", ignored)  # ("²" passed isdigit, crashed int)
        assert engine.default_threads("stacked", CPU) == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "2,1")  # nested levels: the outermost's count
    assert engine.default_threads("stacked", CPU) == 2


def test_the_serial_engine_gives_a_large_step_the_threads_it_runs_fastest_with_now(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A ResNet-20 step on CIFAR-shaped images (31 GFLOP at batch 128) runs on the count,
    of 1 to the worker's share of the cores, its step is timed fastest with now (on a
    quiet 2-core machine 2 threads, with one busy process alongside 1),
    timed once per engine; the default suite's MLP step (17 MFLOP) on one thread, untimed;
    threads asked for, or kept by the suite's queue, win; what a trial used is recorded in
    its numerics."""
    from nnbench.config import parse_suite
    from nnbench.train import SerialEngine, build, engine

    monkeypatch.setattr(engine, "cpu_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    timed: list[int] = []

    def fastest(step: Callable[[], object], most: int) -> tuple[int, dict[int, float]]:
        timed.append(most)
        return min(most, 4), {1: 0.4, 4: 0.1}

    monkeypatch.setattr(engine, "fastest_threads", fastest)
    monkeypatch.setattr(engine, "others_running", lambda: 1)  # another job: timed
    small = load_suite(REPO / "suites/default.yaml").trials()[0]
    large = parse_suite("name: r\ntask: {dataset: cifar10, model: resnet}\nfixed: "
                        "{optimizer: sgd, epochs: 1, batch_size: 128}\n").trials()[0]
    assert build.step_flops(small) == pytest.approx(
        3 * 2 * (40 * 256 + 256 * 128 + 128 * 10) * 64)
    assert build.step_flops(large) > 30e9 > engine.SPLIT_FLOPS > build.step_flops(small)
    serial = SerialEngine(CPU)
    assert [serial.threads_for(s) for s in (small, large, large)] == [1, 4, 4]
    assert (timed, serial.chosen_threads) == ([8], 4)  # timed once, up to its 8 cores
    assert SerialEngine(CPU, workers=4).threads_for(large) == 2 and timed[-1] == 2
    timed.clear()
    assert SerialEngine(CPU, kept_threads=8).threads_for(large) == 8  # the queue's
    assert SerialEngine(CPU, kept_threads=8, workers=2).threads_for(large) == 4  # its share
    assert SerialEngine(CPU, workers=8).threads_for(large) == 1  # a share of 1: nothing to time
    assert SerialEngine(CPU, threads=3).threads_for(small) == 3
    assert SerialEngine(CPU, threads=3).threads_for(large) == 3
    assert SerialEngine(torch.device("cuda")).threads_for(large) == 1
    assert timed == []
    trained = list(SerialEngine(CPU).run([replace(small, epochs=1)], Quiet()))
    assert trained[0].numerics.threads == 1
    # another worker kept its count first: this one trains with that, and says so once
    kept: list[int] = []

    def another_first(timed: int) -> int:  # the queue's keep: another worker's came first
        kept.append(timed)
        return 2

    serial = SerialEngine(CPU, keep_threads=another_first)
    assert serial.describe([small, large, large]) == [
        "serial engine: 2 thread(s) for each trial whose training step takes 1 GFLOP or "
        "more: the count the suite's queue keeps, chosen by another worker first (here: the "
        "fastest now (a step on 1 thread 0.400 s, 4 threads 0.100 s)); --threads N sets them"]
    assert (kept, serial.threads_for(large), serial.describe([large])) == ([4], 2, [])
    serial = SerialEngine(CPU, keep_threads=lambda n: n)
    assert serial.describe([large]) == [
        "serial engine: 4 thread(s) for each trial whose training step takes 1 GFLOP or "
        "more: the fastest now (a step on 1 thread 0.400 s, 4 threads 0.100 s); --threads N "
        "sets them"]
    assert SerialEngine(CPU, kept_threads=2).describe([small, large]) == [
        "serial engine: 2 thread(s) for each trial whose training step takes 1 GFLOP or "
        "more: the count the suite's queue keeps from its first such trial (a fresh queue, "
        "--storage, chooses again); --threads N sets them"]
    assert SerialEngine(CPU).describe([small]) == []
    assert SerialEngine(CPU, threads=2).describe([large]) == []
    # nothing else running: the share, untimed (more threads then only help), kept
    monkeypatch.setattr(engine, "others_running", lambda: 0)
    timed.clear()

    def keep(found: int) -> int:  # the queue's keep: this worker's came first
        kept.append(found)
        return found

    serial = SerialEngine(CPU, workers=2, keep_threads=keep)
    assert serial.describe([large]) == [
        "serial engine: 4 thread(s) for each trial whose training step takes 1 GFLOP or "
        "more: the worker's share of the cores, as no other process was running; --threads N "
        "sets them"]
    assert (timed, kept[-1]) == ([], 4)
    monkeypatch.setattr(engine, "others_running", lambda: None)  # not Linux: timed
    assert SerialEngine(CPU).threads_for(large) == 4 and timed == [8]
    # the stacked engine's trials it cannot stack: its one serial engine's threads
    stacked = train.make_engine("auto", CPU, population=[large], kept_threads=2)
    assert stacked.describe([large])[-1].startswith("serial engine: 2 thread(s) for each")


def test_a_failing_timing_step_trains_on_the_share_and_the_trial_says_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing a large step that fails (a model that cannot run on so few examples) never
    escapes the engine: the trials train on the worker's share, as before timing, and
    fail or finish on their own; nothing is kept in the suite's queue."""
    from nnbench.train import SerialEngine, build, engine

    monkeypatch.setattr(engine, "cpu_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(engine, "SPLIT_FLOPS", 0.0)

    def broken(spec: TrialSpec, device: torch.device) -> Callable[[], None]:
        raise RuntimeError("Expected more than 1 value per channel when training\nmore")

    monkeypatch.setattr(build, "timing_step", broken)
    monkeypatch.setattr(engine, "others_running", lambda: 1)
    kept: list[int] = []

    def keep(timed: int) -> int:
        kept.append(timed)
        return timed

    serial = SerialEngine(CPU, keep_threads=keep)
    small = replace(load_suite(REPO / "suites/default.yaml").trials()[0], epochs=1)
    assert serial.describe([small]) == [
        "serial engine: 2 thread(s) for each trial whose training step takes 1 GFLOP or "
        "more: the worker's share of the cores: timing their step failed (RuntimeError: "
        "Expected more than 1 value per channel when training); --threads N sets them"]
    (result,) = serial.run([small], Quiet())
    assert (result.status, result.numerics.threads, kept) == ("finished", 2, [])


def test_fastest_threads_takes_more_threads_only_where_the_step_is_clearly_faster() -> None:
    """Each count of 1, 2, 4, ... up to the most is timed (best of its repeats, after a
    warm-up step); a larger count wins only where it takes under 85% of the best smaller
    one's time; the caller's threads are restored."""
    from nnbench.train import engine

    clock = [0.0]
    steps: list[int] = []

    def taking(seconds: dict[int, float]) -> Callable[[], None]:
        def step() -> None:  # a step's time on the clock, by the threads it runs on
            steps.append(torch.get_num_threads())
            clock[0] += seconds[torch.get_num_threads()]
        return step

    before = torch.get_num_threads()
    # quiet: the second core pays; busy: it waits on the other job; a tie: the fewer
    def fastest(seconds: dict[int, float], most: int) -> int:
        chosen, times = engine.fastest_threads(taking(seconds), most, clock=lambda: clock[0])
        assert times == ({} if most == 1 else pytest.approx(seconds))
        return chosen

    assert fastest({1: 0.16, 2: 0.10}, 2) == 2
    assert steps == [2, 1, 2, 1, 2]  # a warm-up, then the counts in turns, twice
    assert fastest({1: 0.10, 2: 0.17}, 2) == 1
    assert fastest({1: 0.10, 2: 0.09}, 2) == 1
    assert fastest({1: 0.4, 2: 0.2, 4: 0.19, 6: 0.1}, 6) == 6
    assert fastest({1: 0.4, 2: 0.2, 4: 0.1, 6: 0.3}, 6) == 4
    # 4 threads are 16% faster than 1 but not 15% faster than 2: 1
    assert fastest({1: 1.0, 2: 0.9, 4: 0.84}, 4) == 1
    steps.clear()
    assert fastest({1: 0.1}, 1) == 1 and steps == []  # nothing to time
    # each count's best of its timings: a slow first round (another job woke) is not it
    rounds = iter([0.0, 0.5, 0.9, 0.16, 0.10])  # warm-up; round 1: 1, 2; round 2: 1, 2
    chosen, times = engine.fastest_threads(
        lambda: clock.__setitem__(0, clock[0] + next(rounds)), 2, clock=lambda: clock[0])
    assert chosen == 2 and times == pytest.approx({1: 0.16, 2: 0.10})
    assert torch.get_num_threads() == before


def test_others_running_sees_a_busy_process_and_says_none_where_it_cannot_look(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """How many other tasks want a core now, from Linux's /proc/stat: a busy process
    alongside is one of them; where /proc/stat cannot be read, None (the step is timed)."""
    import subprocess
    import sys

    from nnbench.train import engine

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time_limit = 50
        while time_limit and (engine.others_running() or 0) < 1:  # it is starting
            time_limit -= 1
        assert (engine.others_running(samples=3) or 0) >= 1
    finally:
        busy.kill()
        busy.wait()

    def unreadable(*args: object, **kwargs: object) -> object:
        raise PermissionError("/proc/stat")

    monkeypatch.setattr("builtins.open", unreadable)
    assert engine.others_running() is None


@pytest.mark.parametrize(("task", "norm"), [
    ("{dataset: digits, model: {name: cnn, channels: [4, 8], hidden: [16]}}", "none"),
    ("{dataset: digits, model: {name: mlp, hidden: [16]}}", "batchnorm"),
    ("{dataset: {name: mnist1d, num_samples: 400}, model: cnn1d}", "none"),
    ("{dataset: {name: mnist1d, num_samples: 400}, model: gru}", "none"),
    ("{dataset: cifar10, model: resnet}", "none"),
])
def test_timing_step_runs_the_trial_s_model_and_leaves_the_callers_rng_alone(
        task: str, norm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The step the threads are timed with, for every shipped model kind: forward and
    backward of the trial's model structure (dropout in it) on its input shape, as the
    engines lay it out, on at least 2 examples (batch norm trains on no fewer: one
    example of a model of 16 GFLOP or more failed); neither building it nor running it
    draws from the global RNG, so timing changes no trial's weights."""
    from nnbench.train import build

    monkeypatch.setattr(build, "TIMING_FLOPS", 1.0)  # as few examples as it takes
    spec = parse_suite(f"name: t\ntask: {task}\nfixed: {{optimizer: sgd, epochs: 1, "
                       f"batch_size: 32, dropout: 0.5, norm: {norm}}}\n").trials()[0]
    state = torch.get_rng_state()
    step = build.timing_step(spec, CPU)
    step()
    step()
    assert torch.equal(torch.get_rng_state(), state)


def test_a_conv_net_trains_channels_last_on_a_cpu_to_the_same_numbers_up_to_rounding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build_parts lays a 2-D conv net out channels-last on a CPU (oneDNN's faster layout);
    a model without 2-D convolutions keeps torch's layout. The layout changes only the
    rounding: a few steps from the same weights end where the NCHW model's do. (On an
    AVX2-only CPU nnbench keeps torch's layout, `channels_last_safe`; this small net's
    steps run there too, so the channels-last path is checked on every machine.)"""
    monkeypatch.setattr(train.build, "channels_last_safe", lambda: True)
    def parts(model: str) -> train.Parts:
        spec = parse_suite(f"name: l\ntask: {{dataset: digits, model: {model}}}\n"
                           f"fixed: {{optimizer: {{name: sgd, lr: 0.1, momentum: 0.9}}, "
                           f"epochs: 1, batch_size: 32}}\n").trials()[0]
        with seeding.trial_rng(spec.seed_of("init"), CPU):
            return build_parts(spec, CPU)

    conv = parts("{name: cnn, channels: [8, 16], hidden: [32]}")
    convs = [m.weight for m in conv.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not convs[1].is_contiguous()  # 8 input channels (the first conv's one is both)
    mlp = parts("mlp")
    assert all(w.is_contiguous() for w in mlp.model.parameters())

    nchw = parts("{name: cnn, channels: [8, 16], hidden: [32]}")
    nchw.model.to(memory_format=torch.contiguous_format)
    assert all(w.is_contiguous() for w in nchw.model.parameters())
    x, y = conv.data.x_train[:96], conv.data.y_train[:96]
    for start in range(0, 96, 32):  # 3 steps of each from the same weights
        fast, _ = serial.train_step(conv, x[start:start + 32], y[start:start + 32])
        plain, _ = serial.train_step(nchw, x[start:start + 32], y[start:start + 32])
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
    for (name, fast_w), plain_w in zip(conv.model.state_dict().items(),
                                       nchw.model.state_dict().values(), strict=True):
        torch.testing.assert_close(fast_w, plain_w, rtol=1e-4, atol=1e-6, msg=name)


class _ViewNet(torch.nn.Module):
    """A plugin's conv net as users write them: `x.view(n, -1)` after the convolution,
    which a channels-last activation refuses."""

    def __init__(self, channels: int, outputs: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
        self.out = torch.nn.LazyLinear(outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.out(h.view(h.size(0), -1))


def test_a_plugin_conv_net_keeps_torch_s_layout_and_the_layout_is_in_the_numerics(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every 2-D conv net was laid out channels-last on a CPU: a plugin's net that `.view`s
    an activation failed every trial ("view size is not compatible"), one with a 5-D tensor
    could not be built. Only nnbench's own conv nets are, and their numerics say so: a
    trial trained before the layout changed rounds differently, and the report must not
    pool the two as one numerics."""
    from nnbench.registry import BUILTIN, ComponentInfo, NoParams, register
    from nnbench.testing import isolated_registry

    monkeypatch.setattr(train.build, "channels_last_safe", lambda: True)

    def build_net(params: NoParams, *, input_shape: tuple[int, ...], outputs: int,
              **_: object) -> torch.nn.Module:
        model = _ViewNet(input_shape[0], outputs)
        model(torch.zeros(1, *input_shape))  # the lazy layer's shape
        return model

    text = ("name: l\ntask: {{dataset: digits, model: {model}}}\n"
            "fixed: {{optimizer: {{name: sgd, lr: 0.1}}, epochs: 1, batch_size: 64}}\n")
    with isolated_registry():
        register(ComponentInfo(kind="model", name="viewnet", build=build_net, params=NoParams,
                               doc="a plugin's conv net that views its activations"))
        assert registry.get("model", "viewnet").source != BUILTIN
        plugin = train_trial(parse_suite(text.format(model="viewnet")).trials()[0], CPU)
        assert plugin.status == "finished", plugin.reason
        assert plugin.numerics.layout == "" and "nnbench.layout" not in plugin.numerics.tags()
    own = train_trial(parse_suite(text.format(model="{name: cnn, channels: [4], hidden: []}"))
                      .trials()[0], CPU)
    assert own.status == "finished", own.reason
    assert own.numerics.layout == "channels_last"
    assert own.numerics.tags()["nnbench.layout"] == "channels_last"
    assert own.numerics.label() == "serial fp32 1 thread channels-last"
    mlp = train_trial(parse_suite(text.format(model="mlp")).trials()[0], CPU)
    assert mlp.numerics.layout == "" and mlp.numerics.label() == "serial fp32 1 thread"
    # a CPU without AVX-512 (oneDNN's channels-last ResNet backward aborted on an AVX2
    # EPYC): nnbench's own conv nets keep torch's layout, and their numerics say so
    monkeypatch.setattr(train.build, "channels_last_safe", lambda: False)
    plain = train_trial(parse_suite(text.format(model="{name: cnn, channels: [4], hidden: []}"))
                        .trials()[0], CPU)
    assert plain.status == "finished" and plain.numerics.layout == ""

