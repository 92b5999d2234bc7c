"""The architectures papers benchmark on: the MNIST-1D paper's CNN and GRU, a CIFAR ResNet.

Shapes against the paper's parameter counts, every axis reaching the new models in the
serial engine (init gate by gate in the GRU, L1/L2 and diagnostics over GRU matrices,
BatchNorm, dropout), bitwise reproducibility, checkpoints, and the ResNet training on
CIFAR-10's real on-disk format with its parameter count in the report.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow.pytorch
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from nnbench import cli, registry
from nnbench.components.regularizers import Dropout
from nnbench.config import TrialSpec, load_suite
from nnbench.train import build_parts, penalty, train_trial
from nnbench.train.build import layer_weights, weight_layers

CPU = torch.device("cpu")


def _model(value: Any, input_shape: tuple[int, ...], outputs: int = 10, **context: Any
           ) -> nn.Module:
    spec = registry.resolve("model", value)
    defaults: dict[str, Any] = {
        "activation": nn.ReLU, "gain": ("relu", None), "norm": None, "dropout": 0.0,
        "init": registry.build("init", registry.resolve("init", "default")),
        "generator": torch.Generator().manual_seed(0)}
    model: nn.Module = registry.build("model", spec, input_shape=input_shape, outputs=outputs,
                                      **{**defaults, **context})
    return model


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mnist1d_paper_models_have_the_papers_parameter_counts() -> None:
    """LinearBase 410, MLPBase 15,210, ConvBase 5,210, GRUBase 5,134 (the paper's logs)."""
    assert _count(_model("logistic", (40,))) == 410
    assert _count(_model({"name": "mlp", "hidden": [100, 100]}, (40,))) == 15_210
    assert _count(_model("cnn1d", (40,))) == 5_210
    assert _count(_model("gru", (40,))) == 5_134


def test_cnn1d_shapes_follow_the_conv_arithmetic() -> None:
    model = _model("cnn1d", (40,))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0])
            for c in convs] == [(1, 25, 5, 2, 1), (25, 25, 3, 2, 1), (25, 25, 3, 2, 1)]
    assert model(torch.randn(7, 40)).shape == (7, 10)  # 40 -> 19 -> 10 -> 5 steps, 125 features
    two_channels = _model({"name": "cnn1d", "hidden": [16]}, (2, 40))
    assert two_channels(torch.randn(3, 2, 40)).shape == (3, 10)
    with pytest.raises(ValueError, match=r"cnn1d layer 1 .* leaves nothing of a 2-long input"):
        _model("cnn1d", (2,))


def test_gru_readouts() -> None:
    for readout, features in (("flatten", 2 * 6 * 40), ("last", 2 * 6), ("mean", 2 * 6)):
        model = _model({"name": "gru", "readout": readout}, (40,))
        head = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert head[0].in_features == features
        assert model(torch.randn(5, 40)).shape == (5, 10)
    stacked = _model({"name": "gru", "layers": 2, "bidirectional": False, "hidden": [8]},
                     (3, 20), dropout=0.2)
    assert stacked(torch.randn(4, 3, 20)).shape == (4, 10)
    gru = next(m for m in stacked.modules() if isinstance(m, nn.GRU))
    assert (gru.input_size, gru.num_layers, gru.dropout) == (3, 2, 0.2)


def test_resnet20_shape_and_parameter_count() -> None:
    model = _model("resnet", (3, 32, 32), norm=registry.build(
        "norm", registry.resolve("norm", "batchnorm")))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len([c for c in convs if c.kernel_size == (3, 3)]) == 19  # ResNet-20: 19 + the fc

    def conv(cin: int, cout: int, k: int = 3) -> int:
        return cin * cout * k * k + 2 * cout  # no bias under BatchNorm; its scale and shift

    expected = (conv(3, 16) + 6 * conv(16, 16)
                + conv(16, 32) + conv(32, 32) + conv(16, 32, 1) + 4 * conv(32, 32)
                + conv(32, 64) + conv(64, 64) + conv(32, 64, 1) + 4 * conv(64, 64)
                + 64 * 10 + 10)
    assert _count(model) == expected == 272_474
    plain = _model({"name": "resnet", "blocks": [1, 1], "widths": [4, 8]}, (1, 8, 8))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert all(c.bias is not None for c in plain.modules() if isinstance(c, nn.Conv2d))


def test_the_init_fills_gru_matrices_gate_by_gate() -> None:
    """xavier_uniform on each gate's matrix (fan-in: input or hidden size, fan-out: hidden
    size), gain 1 whatever the activation, drawn from the trial's init stream: each gate
    within its own bound, and each reaching close to it."""
    init = registry.build("init", registry.resolve("init", "xavier_uniform"))
    model = _model("gru", (40,), init=init, gain=("tanh", None))
    gru = next(m for m in model.modules() if isinstance(m, nn.GRU))
    hidden = 6
    gates = []
    for name, weight in gru.named_parameters():
        if not name.startswith("weight_"):
            assert not weight.any(), f"{name}: bias: zeros"
            continue
        fan_in = 1 if name.startswith("weight_ih") else hidden
        bound = math.sqrt(6 / (fan_in + hidden))  # nn.init.xavier_uniform_ of one gate
        for gate in weight.detach().chunk(3):
            assert gate.abs().max() <= bound, name
            gates.append(gate)
    hh = torch.cat([g.flatten() for g in gates[3:]])  # the hidden-to-hidden gates, 108 values
    assert float(hh.abs().max()) > 0.9 * math.sqrt(6 / (2 * hidden))
    assert len({tuple(g.flatten().tolist()) for g in gates}) == len(gates)  # own draws


def _gru_spec(write_suite: Callable[..., Path], **fixed: Any) -> TrialSpec:
    extra = "".join(f"  {k}: {v}\n" for k, v in fixed.items())
    path = write_suite(textwrap.dedent("""\
        name: gru
        task:
          dataset: {name: mnist1d, num_samples: 400}
          model: {name: gru, hidden_size: 4, hidden: [8]}
        fixed:
          optimizer: {name: adam, lr: 0.01}
          epochs: 2
          batch_size: 50
        """) + extra)
    return load_suite(path).base


def test_l1_l2_and_sparsity_see_the_gru_weights(write_suite: Callable[..., Path]) -> None:
    spec = _gru_spec(write_suite, l1=0.001, l2=0.01)
    parts = build_parts(spec, CPU)
    layers = weight_layers(parts.model)
    assert isinstance(layers[0], nn.GRU) and len(layers) == 3  # GRU, head, output
    gru_weights = layer_weights(layers[0])
    assert len(gru_weights) == 4  # ih and hh, both directions; never the biases
    assert all(any(w is p for p in parts.weights) for w in gru_weights)
    weights = [p for n, p in parts.model.named_parameters() if "weight" in n]
    expected = 0.001 * torch.stack([w.abs().sum() for w in weights]).sum() \
        + 0.5 * 0.01 * torch.stack([w.square().sum() for w in weights]).sum()
    value = penalty(parts.weights, parts.l1, parts.l2, lanes=False)
    assert value is not None and torch.allclose(value, expected)

    result = train_trial(spec, CPU)
    assert result.status == "finished", result.reason
    epoch = result.history[-1]
    assert {"grad_norm.layer1", "grad_norm.layer2", "grad_norm.layer3", "dead_fraction",
            "weight_sparsity"} <= set(epoch)
    assert epoch["grad_norm.layer1"] > 0  # the GRU's matrices, taken together


@pytest.mark.parametrize("model", ["{name: gru, hidden_size: 4, hidden: [8]}",
                                   "{name: cnn1d, channels: [4, 4], kernel_sizes: [5, 3]}"])
def test_new_models_take_batchnorm_dropout_and_are_bitwise_reproducible(
        write_suite: Callable[..., Path], model: str) -> None:
    spec = _gru_spec(write_suite, norm="batchnorm", dropout=0.2, init="kaiming_normal")
    spec = replace(spec, model=registry.resolve("model", _yaml(model)))
    parts = build_parts(spec, CPU)
    assert any(isinstance(m, nn.BatchNorm1d) for m in parts.model.modules())
    assert any(isinstance(m, Dropout) for m in parts.model.modules())
    first, second = train_trial(spec, CPU, keep_checkpoint=True), train_trial(spec, CPU)
    assert first.status == "finished", first.reason
    assert first.fingerprint == second.fingerprint
    assert first.final == second.final
    from nnbench.train import evaluate_checkpoint

    assert first.checkpoint is not None
    assert evaluate_checkpoint(first.checkpoint, CPU) == pytest.approx(first.final)


def _yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


IGNORED = {
    "logistic_activation": ("logistic", "grid:\n  activation: [relu, tanh]\n",
                            "grid.activation[1]: configurations activation=relu and "
                            "activation=tanh would train identically (model 'logistic' has "
                            "no hidden layer"),
    "gru_norm": ("gru", "fixed:\n  norm: batchnorm\n",
                 "fixed.norm: norm 'batchnorm' has no effect: model 'gru' has no "
                 "hidden layer to normalise"),
    "mlp_without_hidden_dropout": ("{name: mlp, hidden: []}", "ablate:\n  dropout: [0.5]\n",
                                   "ablate.dropout[0]: dropout 0.5 has no effect: model "
                                   "'mlp' has no hidden layer"),
}


@pytest.mark.parametrize("case", list(IGNORED))
def test_varying_an_axis_the_model_ignores_is_an_error(case: str,
                                                       write_suite: Callable[..., Path],
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    model, extra, fragment = IGNORED[case]
    text = textwrap.dedent(f"""\
        name: ignored
        task:
          dataset: mnist1d
          model: {model}
        fixed:
          optimizer: sgd
          epochs: 1
          batch_size: 32
        """)
    if extra.startswith("fixed:"):
        text += extra.removeprefix("fixed:\n")
    else:
        text += extra
    assert cli.main(["validate", str(write_suite(text))]) == 2
    assert fragment in capsys.readouterr().err


def test_an_axis_ignored_by_some_models_is_rejected_where_it_repeats_a_trial(
        write_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = write_suite(textwrap.dedent("""\
        name: mixed
        task:
          dataset: mnist1d
          model: logistic
        fixed:
          optimizer: sgd
          epochs: 1
          batch_size: 32
        grid:
          model: [logistic, mlp]
          activation: [relu, tanh]
        """))
    # logistic x relu and logistic x tanh would be the same trial twice
    assert cli.main(["validate", str(path)]) == 2
    assert ("configurations model=logistic, activation=relu and model=logistic, "
            "activation=tanh would train identically") in capsys.readouterr().err
    allowed = write_suite(path.read_text().replace("logistic, mlp", "mlp, cnn1d"))
    assert len(load_suite(allowed).configurations()) == 4


def test_resnet_trains_on_cifar10_files_and_the_report_shows_its_size(
        vision_data: Path, write_suite: Callable[..., Path], tmp_path: Path,
        tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_suite(textwrap.dedent("""\
        name: resnet_cifar
        task:
          dataset: {name: cifar10, val_fraction: 0.2}
          model: {name: resnet, blocks: [1, 1, 1], widths: [4, 8, 16]}
        fixed:
          activation: relu
          init: kaiming_normal
          norm: batchnorm
          optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
          augmentation: [random_horizontal_flip, {name: random_crop, size: 32, padding: 4}]
          epochs: 2
          batch_size: 16
        grid:
          dropout: [0.0, 0.1]
        seeds: 1
        checkpoint: true
        """))
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri]) == 0
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("resnet_cifar")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.`nnbench.role` = 'trial'")
    assert {r.data.tags["nnbench.status"] for r in runs} == {"finished"}
    num_params = {int(r.data.tags["nnbench.num_params"]) for r in runs}
    spec = load_suite(path).base
    expected = sum(p.numel() for p in build_parts(spec, CPU).model.parameters())
    assert num_params == {expected}
    html = (tmp_path / "reports" / "resnet_cifar.html").read_text()
    assert f'<td class="num">{expected:,}</td>' in html  # the leaderboard's parameters column
    assert cli.main(["evaluate", runs[0].info.run_id, "--tracking-uri", tracking_uri,
                     "--device", "cpu"]) == 0
    # the checkpoint is also the run's MLflow model, traced (pt2) with its BatchNorm in eval
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    model = mlflow.pytorch.load_model(f"runs:/{runs[0].info.run_id}/model")
    assert isinstance(model, torch.fx.GraphModule)
    trial = next(t for t in load_suite(path).trials()
                 if t.trial_id == runs[0].data.tags["nnbench.trial_id"])
    data = registry.build("dataset", trial.dataset, seed=trial.seed, device=CPU)
    with torch.no_grad():
        accuracy = (model(data.x_test).argmax(1) == data.y_test).double().mean().item()
    assert accuracy == pytest.approx(runs[0].data.metrics["test_accuracy"], abs=1e-9)
