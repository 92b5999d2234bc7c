"""Plugins: a user's own model, activation and dataset, from a module nnbench never saw.

Nothing is installed: each test writes a plugin module into its temporary directory, a
suite names it under `plugins:`, and nnbench imports it before resolving any name. Every
test runs inside `isolated_registry()`, which undoes the registrations and forgets the
module afterwards, as a fresh process would.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from nnbench import cli, plugins, registry
from nnbench.config import load_suite
from nnbench.testing import ContractError, check_component, isolated_registry
from tests.conftest import within

PLUGIN = '''\
"""A lab's own components: a model, an activation and a dataset."""

import numpy as np
from pydantic import Field
from torch import nn

from nnbench.data import DataShape, HeldOutParams, split
from nnbench.registry import ComponentInfo, Params, register

__version__ = "0.3"


class TinyNetParams(Params):
    width: int = Field(12, ge=1, description="hidden units")


def build_tinynet(params, *, input_shape, outputs, activation, gain, init, norm, dropout,
                  generator):
    hidden = nn.Linear(int(np.prod(input_shape)), params.width)
    out = nn.Linear(params.width, outputs)
    init(hidden, gain, generator)
    init(out, ("linear", None), generator)
    layers = [nn.Flatten(), hidden]
    if norm is not None:
        layers.append(norm(params.width, 1))
    layers.append(activation())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, out)


def build_forgetful(params, **context):
    """Deliberately broken: tinynet, but the init it is given never reaches a layer."""
    return build_tinynet(params, **{**context, "init": lambda layer, gain, generator: None})


class BlobsParams(HeldOutParams):
    n_samples: int = Field(240, ge=10, description="points generated")
    data_seed: int = Field(7, ge=0, description="seed of the generator (fixed data)")


def build_blobs(p, seed, device):
    rng = np.random.default_rng(p.data_seed)
    y = np.arange(p.n_samples) % 3
    x = rng.normal(size=(p.n_samples, 4)) + y[:, None] * 1.5
    return split(x, y, p, seed=seed, device=device, targets="class", num_classes=3)


register(ComponentInfo(kind="model", name="tinynet", build=build_tinynet,
                       params=TinyNetParams, doc="one hidden layer, the lab's favourite"))
register(ComponentInfo(kind="model", name="forgetful", build=build_forgetful,
                       params=TinyNetParams, doc="a model that ignores its init (broken)"))
register(ComponentInfo(kind="activation", name="lab_softsign", build=lambda p: nn.Softsign(),
                       doc="x / (1 + |x|)", attrs={"gain": lambda p: ("linear", None)}))
register(ComponentInfo(kind="dataset", name="lab_blobs", build=build_blobs, params=BlobsParams,
                       doc="three Gaussian blobs in 4-D",
                       attrs={"targets": "class", "input": "vector",
                              "shape": lambda p: DataShape(  # what validation checks
                                  examples=p.n_samples, test=None, input_shape=(4,),
                                  targets="class", num_classes=3)}))
'''

SUITE = """\
name: lab
description: the lab's own model, activation and data
plugins: [{module}]
task:
  dataset: {{name: lab_blobs, n_samples: 240}}
  model: {{name: tinynet, width: 12}}
  loss: cross_entropy
  metric: test_accuracy
fixed:
  activation: relu
  init: xavier_normal
  optimizer: {{name: adam, lr: 0.01}}
  epochs: 3
  batch_size: 32
grid:
  activation: [relu, lab_softsign]
seeds: 1
checkpoint: true
"""


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    with isolated_registry():
        yield


@pytest.fixture
def lab(tmp_path: Path) -> Callable[..., Path]:
    """Write the plugin module (or another text) and a suite naming it; returns the suite."""

    def write(module: str = "lab_components", text: str = PLUGIN) -> Path:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(text), encoding="utf-8")
        suite = tmp_path / "lab.yaml"
        suite.write_text(SUITE.format(module=module), encoding="utf-8")
        return suite

    return write


def _run(suite: Path, uri: str) -> int:
    with isolated_registry():  # like a fresh process: the plugin is imported anew
        return cli.main(["run", str(suite), "--tracking-uri", uri, "--report-dir", "reports"])


def test_a_plugin_model_activation_and_dataset_run_end_to_end(
        lab: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    suite_path = lab()
    assert _run(suite_path, tracking_uri) == 0
    err = capsys.readouterr().err
    assert "[2/2]" in err and "activation=lab_softsign" in err

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("lab")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.`nnbench.role` = 'trial'")
    assert {r.data.tags["nnbench.status"] for r in runs} == {"finished"}
    assert {r.data.params["activation.name"] for r in runs} == {"relu", "lab_softsign"}
    with isolated_registry():
        trial_ids = {t.trial_id for t in load_suite(suite_path).trials()}
        digest = f"sha256:{plugins.loaded()['lab_components'].sha256}"
    assert {r.data.params["digests.plugin:lab_components"] for r in runs} == {digest}
    assert {r.data.tags["nnbench.trial_id"] for r in runs} == trial_ids
    tag = runs[0].data.tags["nnbench.plugin.lab_components"]
    assert tag.startswith("0.3 sha256:") and "(1 files)" in tag  # __version__, hash, files

    with isolated_registry():  # a fresh process reloads a checkpoint: the plugin is imported
        assert cli.main(["evaluate", runs[0].info.run_id, "--tracking-uri", tracking_uri,
                         "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert "test_accuracy = " in out.out and "warning" not in out.err
    # from another folder the plugin is not found: said with the fix, which works
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with isolated_registry():
        evaluate = ["evaluate", runs[0].info.run_id, "--tracking-uri", tracking_uri,
                    "--device", "cpu"]
        assert cli.main(evaluate) == 2
        assert "(give the plugin's file (--plugin path/to/module.py) or run evaluate from " \
               "the suite's folder)" in capsys.readouterr().err.replace("\n", " ")
        assert cli.main([*evaluate, "--plugin", "../lab_components.py"]) == 0
        assert "test_accuracy = " in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)

    html = (tmp_path / "reports" / "lab.html").read_text()
    assert "activation=lab_softsign" in html
    assert "<code>lab_components</code> 0.3 sha256:" in html  # provenance names the plugin
    assert "activation lab_softsign, dataset lab_blobs, model tinynet" in html

    with isolated_registry():  # the contract check passes on the plugin's components ...
        load_suite(suite_path)
        for kind, name in (("model", "tinynet"), ("activation", "lab_softsign"),
                           ("dataset", "lab_blobs")):
            check_component(registry.get(kind, name))
        with pytest.raises(ContractError) as caught:  # ... and fails on the broken one
            check_component(registry.get("model", "forgetful"))
    assert str(caught.value).startswith(
        "model 'forgetful' (from lab_components) fails check 'model': ")
    assert "was not initialised by the init axis; call init(layer, gain, generator) on " \
           "every weight layer" in str(caught.value)


def test_a_changed_plugin_retrains_its_trials(lab: Callable[..., Path], tmp_path: Path,
                                              tracking_uri: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    suite_path = lab()
    assert _run(suite_path, tracking_uri) == 0
    assert _run(suite_path, tracking_uri) == 0  # unchanged: nothing to train or re-render
    assert "nothing changed since its report" in capsys.readouterr().err
    with isolated_registry():
        before = {t.trial_id for t in load_suite(suite_path).trials()}

    module = tmp_path / "lab_components.py"
    module.write_text(module.read_text() + "\n# hidden units now default to 12 everywhere\n")
    with isolated_registry():
        after = {t.trial_id for t in load_suite(suite_path).trials()}
    assert before.isdisjoint(after)  # any edit of the plugin's source makes new trials
    assert _run(suite_path, tracking_uri) == 0
    assert "0 already finished, 2 to train" in capsys.readouterr().err
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("lab")
    assert experiment is not None
    ids = {r.data.tags["nnbench.trial_id"] for r in client.search_runs(
        [experiment.experiment_id], "tags.`nnbench.role` = 'trial'")}
    assert ids == before | after  # the old runs stay in MLflow
    trials = (tmp_path / "reports" / "lab.trials.csv").read_text()
    assert all(t in trials for t in after) and not any(t in trials for t in before)

    old_run = next(r for r in client.search_runs([experiment.experiment_id],
                                                 "tags.`nnbench.role` = 'trial'")
                   if r.data.tags["nnbench.trial_id"] in before)
    module.write_text(module.read_text() + "# once more\n")
    with isolated_registry():  # evaluating an old trial says its plugin has changed
        assert cli.main(["evaluate", old_run.info.run_id, "--tracking-uri", tracking_uri,
                         "--device", "cpu"]) == 0
    assert "warning: plugin:lab_components changed since this trial trained (sha256:" in \
        capsys.readouterr().err
    # a plugin model whose shape changed: said, not a traceback of load_state_dict
    module.write_text(module.read_text().replace(
        "nn.Linear(int(np.prod(input_shape)), params.width)",
        "nn.Linear(int(np.prod(input_shape)), 2 * params.width)").replace(
        "nn.Linear(params.width, outputs)", "nn.Linear(2 * params.width, outputs)").replace(
        "norm(params.width, 1)", "norm(2 * params.width, 1)"))
    with isolated_registry():
        assert cli.main(["evaluate", old_run.info.run_id, "--tracking-uri", tracking_uri,
                         "--device", "cpu"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"run {old_run.info.run_id}: its weights do not fit the model as it is built now " \
           "(Error(s) in loading state_dict for Sequential:" in err, err
    assert "a plugin model or a data file it used changed shape since it trained?" in err, err


@pytest.mark.slow
def test_plugin_trials_keep_their_ids_through_the_queue_and_local_workers(
        lab: Callable[..., Path], tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Specs travel through the trial queue as JSON; each worker process imports the
    suite's plugins and rebuilds the very same specs (plugin digests included)."""
    suite_path = lab()
    with isolated_registry(), within(600, "nnbench run --workers 2"):  # workers: processes
        code = cli.main(["run", str(suite_path), "--workers", "2", "--engine", "serial",
                         "--tracking-uri", tracking_uri, "--report-dir", "reports"])
    assert code == 0, capsys.readouterr().err
    with isolated_registry():
        expected = {t.trial_id for t in load_suite(suite_path).trials()}
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("lab")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.`nnbench.role` = 'trial'")
    assert {r.data.tags["nnbench.trial_id"] for r in runs} == expected
    assert {r.data.tags["nnbench.status"] for r in runs} == {"finished"}


IMPORTING = '''\
import lab_components  # the lab's models, imported for a helper
from torch import nn
from nnbench.registry import ComponentInfo, register

register(ComponentInfo(kind="activation", name="lab_tanhshrink", build=lambda p: nn.Tanhshrink(),
                       doc="x - tanh(x)", attrs={"gain": lambda p: ("linear", None)}))
'''


def test_a_plugin_importing_another_credits_it_with_its_components(
        lab: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plugin that imports the lab's models module was recorded as their source: naming
    both in `plugins:` was refused ("already registered by plugin 'lab_importer'") or not,
    by which file was checked first, and an edit of the models module left the ids of
    the trials using them unchanged (the importer's source was hashed for them)."""
    suite = lab()
    (tmp_path / "lab_importer.py").write_text(IMPORTING)
    alone = tmp_path / "alone.yaml"
    alone.write_text(suite.read_text().replace("plugins: [lab_components]",
                                               "plugins: [lab_importer]").replace(
        "name: lab\n", "name: alone\n"))
    both = tmp_path / "both.yaml"
    both.write_text(suite.read_text().replace("plugins: [lab_components]",
                                              "plugins: [lab_importer, lab_components]"))
    for order in ([alone, both], [both, alone]):
        with isolated_registry():
            assert cli.main(["validate", *map(str, order)]) == 0, capsys.readouterr().err
            assert registry.get("model", "tinynet").source == "lab_components"
            assert registry.get("activation", "lab_tanhshrink").source == "lab_importer"
            assert plugins.loaded()["lab_importer"].components == (
                ("activation", "lab_tanhshrink"),)
            assert ("model", "tinynet") in plugins.loaded()["lab_components"].components
    with isolated_registry():
        before = {t.trial_id for t in load_suite(alone).trials()}
    module = tmp_path / "lab_components.py"
    module.write_text(module.read_text() + "\n# the models, edited\n")
    with isolated_registry():
        after = {t.trial_id for t in load_suite(alone).trials()}
    assert before.isdisjoint(after)  # the models changed: their trials are new
    # a plugin that only imports the models: loaded for one suite, it is loaded for the next
    # (the second said "registered no component")
    (tmp_path / "lab_shim.py").write_text("import lab_components\n")
    shims = []
    for name in ("shim_a", "shim_b"):
        shims.append(tmp_path / f"{name}.yaml")
        shims[-1].write_text(suite.read_text().replace(
            "plugins: [lab_components]", "plugins: [lab_shim]").replace(
            "name: lab\n", f"name: {name}\n"))
    with isolated_registry():
        assert cli.main(["validate", *map(str, shims)]) == 0, capsys.readouterr().err
    # a module a plugin executes from its file, not importable by name: the plugin's own
    (tmp_path / "lab_loader.py").write_text(
        "import importlib.util, pathlib\n"
        "spec = importlib.util.spec_from_file_location(\n"
        "    'lab_models_x', pathlib.Path(__file__).with_name('lab_components.py'))\n"
        "importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n")
    loader = tmp_path / "loader.yaml"
    loader.write_text(suite.read_text().replace("plugins: [lab_components]",
                                                "plugins: [lab_loader]").replace(
        "name: lab\n", "name: loader\n"))
    with isolated_registry():
        assert cli.main(["validate", str(loader)]) == 0, capsys.readouterr().err
        assert registry.get("model", "tinynet").source == "lab_loader"


def test_built_in_trials_keep_their_ids(write_suite: Callable[..., Path]) -> None:
    spec = load_suite(write_suite()).trials()[0]
    assert spec.digests == ()
    assert "digests" not in spec.canonical()


BROKEN = {
    "import_error": ("import torchh\n",
                     ["plugins[0]: plugin 'lab_broken': import failed: ModuleNotFoundError: "
                      "No module named 'torchh'", "lab_broken.py, line 1)"]),
    "duplicate_name": ("from torch import nn\nfrom nnbench.registry import ComponentInfo, "
                       "register\nregister(ComponentInfo(kind='model', name='mlp', build="
                       "lambda p, **c: nn.Identity(), doc='my mlp'))\n",
                       ["plugins[0]: plugin 'lab_broken': invalid registration: model 'mlp' "
                        "is already registered by nnbench; choose another name",
                        "lab_broken.py, line 3)"]),
    "bad_params_model": ("from pydantic import BaseModel\nfrom torch import nn\n"
                         "from nnbench.registry import ComponentInfo, register\n"
                         "class P(BaseModel):\n    width: int = 8\n"
                         "register(ComponentInfo(kind='model', name='lab_net', params=P, "
                         "build=lambda p, **c: nn.Identity(), doc='a net'))\n",
                         ["plugin 'lab_broken': invalid registration: model 'lab_net': params "
                          "must be a subclass of nnbench.registry.Params"]),
    "required_param_without_example": (
        "from pydantic import Field\nfrom torch import nn\n"
        "from nnbench.registry import ComponentInfo, Params, register\n"
        "class P(Params):\n    width: int = Field(..., ge=1)\n"
        "register(ComponentInfo(kind='model', name='lab_net', params=P, "
        "build=lambda p, **c: nn.Identity(), doc='a net'))\n",
        ["model 'lab_net': its params model P rejects its example {} (required parameters "
         "need example values): width: Field required"]),
    "unknown_kind": ("from torch import nn\nfrom nnbench.registry import ComponentInfo, "
                     "register\nregister(ComponentInfo(kind='modle', name='lab_net', "
                     "build=lambda p, **c: nn.Identity(), doc='a net'))\n",
                     ["unknown kind 'modle'; did you mean 'model'?"]),
    # attrs of the wrong kind failed later, blamed on another component ("cannot build
    # model 'mlp': 'tuple' object is not callable"; "dataset 'x' has klass targets")
    "gain_not_callable": ("from torch import nn\nfrom nnbench.registry import ComponentInfo, "
                          "register\nregister(ComponentInfo(kind='activation', name='lab_act', "
                          "build=lambda p, **c: nn.ReLU(), doc='an activation', "
                          "attrs={'gain': ('relu', None)}))\n",
                          ["activation 'lab_act': attrs['gain'] must be callable, got tuple "
                           "('relu', None)"]),
    "gain_torch_does_not_know": (
        "from torch import nn\nfrom nnbench.registry import ComponentInfo, register\n"
        "register(ComponentInfo(kind='activation', name='lab_act', build=lambda p, **c: "
        "nn.ReLU(), doc='an activation', attrs={'gain': lambda p: ('rleu', None)}))\n",
        ["activation 'lab_act': attrs['gain'](params) must return (nonlinearity, param) that "
         "torch.nn.init.calculate_gain takes, e.g. ('relu', None) or ('leaky_relu', 0.01); for "
         "its example parameters: ValueError: Unsupported nonlinearity rleu"]),
    "dataset_targets_misspelt": (
        "from nnbench.registry import ComponentInfo, register\n"
        "register(ComponentInfo(kind='dataset', name='lab_data', build=lambda p, **c: None, "
        "doc='data', attrs={'targets': 'klass', 'input': 'vectr'}))\n",
        ["dataset 'lab_data': attrs['targets'] is 'klass'; allowed: 'class', 'real'",
         "dataset 'lab_data': attrs['input'] is 'vectr'; allowed: 'vector', 'signal', "
         "'image'"]),
    "registers_nothing": ("X = 1\n", ["plugin 'lab_broken': registered no component"]),
    "exits_at_import": ("import sys\nsys.exit(0)\n",  # nnbench exited 0, having done nothing
                        ["plugin 'lab_broken': import failed: the module called sys.exit(0) (",
                         "lab_broken.py, line 2); a plugin module only registers components"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_plugin_stops_before_compute(case: str, lab: Callable[..., Path],
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    text, fragments = BROKEN[case]
    suite_path = lab("lab_broken", text)
    assert _run(suite_path, f"sqlite:///{tmp_path / 'mlflow.db'}") == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert err.startswith(f"{suite_path}: plugins[0]: ")
    assert not (tmp_path / "mlflow.db").exists()  # nothing logged
    assert not (tmp_path / "reports").exists()
    with pytest.raises(registry.UnknownComponentError):
        registry.get("model", "lab_net")  # a failed plugin leaves nothing registered


def test_a_missing_plugin_module_is_named(lab: Callable[..., Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    suite_path = lab()
    suite_path.write_text(suite_path.read_text().replace("[lab_components]", "[mylab.netz]"))
    assert cli.main(["validate", str(suite_path)]) == 2
    err = capsys.readouterr().err
    assert f"plugins[0]: plugin 'mylab.netz': no module named 'mylab' (searched {tmp_path}" in err


@pytest.mark.parametrize(("entry", "said"), [
    ("lab_components.py", "expected a module name such as lab_components (dotted Python "
                          "identifiers, as in an import statement); got a module's file"),
    ("./lib/lab.py", "expected a module name such as lib.lab (dotted Python identifiers, as "
                     "in an import statement); got a module's file"),
    ("lib/lab", "expected a module name such as mylab.nets (dotted Python identifiers, as in "
                "an import statement); got a file path"),
    ("' lab_components'", "expected a module name such as mylab.nets (dotted Python "
                          "identifiers, as in an import statement); got spaces"),
    ("''", "expected a module name such as mylab.nets (dotted Python "
           "identifiers, as in an import statement); got empty"),
])
def test_a_plugin_given_as_a_file_says_what_a_module_name_is(
        entry: str, said: str, lab: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    suite_path = lab()
    suite_path.write_text(suite_path.read_text().replace("[lab_components]", f"[{entry}]"))
    assert cli.main(["validate", str(suite_path)]) == 2
    assert f"plugins[0]: plugin {entry.strip(chr(39))!r}: {said}" in capsys.readouterr().err


def test_nnbench_list_shows_plugin_components(lab: Callable[..., Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    lab()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["list", "model", "--plugin", "lab_components"]) == 0
    out = capsys.readouterr().out
    assert "tinynet          one hidden layer, the lab's favourite [plugin lab_components]" in out
    assert "width: int = 12 (hidden units)" in out
    assert "mlp" in out and "[plugin" not in out.split("mlp")[1].splitlines()[0]


# -- installed plugins: entry points -----------------------------------------------------------

def _installed(site: Path, body: str, value: str = "labep") -> None:
    """A package as pip would leave it: the module and its dist-info with entry points."""
    (site / "labep").mkdir(parents=True)
    (site / "labep" / "__init__.py").write_text(body)
    info = site / "labep-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: labep\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(f"[nnbench.components]\nlabep = {value}\n")
    (info / "top_level.txt").write_text("labep\n")


ENTRY_POINT_BODY = """\
from torch import nn
from nnbench.registry import ComponentInfo, register

def setup():
    register(ComponentInfo(kind="activation", name="ep_softsign", build=lambda p: nn.Softsign(),
                           doc="softsign from an installed package",
                           attrs={"gain": lambda p: ("linear", None)}))
"""


def test_installed_packages_register_through_entry_points(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    _installed(site, ENTRY_POINT_BODY, "labep:setup")
    monkeypatch.syspath_prepend(str(site))
    plugins._forget_entry_points()
    info = registry.get("activation", "ep_softsign")
    assert info.source == "labep"
    plugin = plugins.loaded()["labep"]
    assert (plugin.version, plugin.origin, plugin.components) == (
        "1.2", "entry point labep", (("activation", "ep_softsign"),))
    check_component(info)


def test_a_broken_entry_point_stops_every_command(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  write_suite: Callable[..., Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    _installed(site, "raise RuntimeError('the lab server is down')\n")
    monkeypatch.syspath_prepend(str(site))
    plugins._forget_entry_points()
    assert cli.main(["validate", str(write_suite())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plugin 'entry point labep = labep of labep 1.2': import failed: "
                          "RuntimeError: the lab server is down")
    assert "__init__.py, line 1)" in err


def test_an_entry_point_cannot_take_a_built_in_name(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    _installed(site, ENTRY_POINT_BODY.replace("ep_softsign", "relu"), "labep:setup")
    monkeypatch.syspath_prepend(str(site))
    plugins._forget_entry_points()
    assert cli.main(["list", "activation"]) == 2  # loaded before the command: built-ins first
    assert "invalid registration: activation 'relu' is already registered by nnbench; choose " \
           "another name" in capsys.readouterr().err


# -- the contract in the dry build: output width, parameter types --------------------------------

WIDE = '''\
"""A model that ignores the `outputs` it is given: its output layer has `outs` units."""

import numpy as np
from pydantic import Field
from torch import nn

from nnbench.registry import ComponentInfo, Params, register


class WideParams(Params):
    outs: int = Field(10, ge=1, description="output units, whatever the task")


class WideNet(nn.Module):
    def __init__(self, inputs, outs, activation):
        super().__init__()
        self.hidden, self.act, self.out = nn.Linear(inputs, 8), activation(), nn.Linear(8, outs)

    def forward(self, x):
        return self.out(self.act(self.hidden(x.flatten(1))))


def build_wide(params, *, input_shape, outputs, activation, gain, init, norm, dropout,
               generator):
    model = WideNet(int(np.prod(input_shape)), params.outs, activation)
    init(model.hidden, gain, generator)
    init(model.out, ("linear", None), generator)
    return model


register(ComponentInfo(kind="model", name="widenet", build=build_wide, params=WideParams,
                       doc="a net whose output width ignores the task"))
'''

TASK_SUITE = """\
name: {name}
plugins: [{module}]
task:
  dataset: {dataset}
  model: {model}
  loss: {loss}
fixed:
  optimizer: {{name: adam, lr: 0.01}}
  epochs: 2
  batch_size: 32
seeds: 1
"""


def _plugin_suite(folder: Path, module: str, text: str, *, name: str = "lab",
                  model: str = "widenet", dataset: str = "{name: circles, n_samples: 200}",
                  loss: str = "cross_entropy") -> Path:
    (folder / f"{module}.py").write_text(text, encoding="utf-8")
    path = folder / f"{name}.yaml"
    path.write_text(TASK_SUITE.format(name=name, module=module, dataset=dataset, model=model,
                                      loss=loss), encoding="utf-8")
    return path


def _nothing_created(folder: Path) -> None:
    made = [n for n in ("mlflow.db", "mlruns", "reports", "optuna.db") if (folder / n).exists()]
    assert not made, made


BAD_AUGMENTATION = '''\
import torch
from pydantic import Field
from nnbench.components.augmentations import Augmentation
from nnbench.registry import ComponentInfo, Params, register


class P(Params):
    mode: str = Field("ok", description="what it returns")


class Bad(Augmentation):
    def __init__(self, mode):
        self.mode = mode

    def sample(self, x, g):
        return {}

    def apply(self, x, p):
        return {"drop": x[:-1], "double": x.double(), "none": None, "ok": x}[self.mode]


register(ComponentInfo(kind="augmentation", name="bad", build=lambda p, **kw: Bad(p.mode),
                       params=P, doc="returns what it should not", attrs={"input": "any"}))
'''


@pytest.mark.parametrize(("mode", "said"), [
    ("drop", "turns a batch of 2 examples into 1; an augmentation changes each example, "
             "never how many there are"),
    ("double", "turns torch.float32 inputs on cpu into torch.float64 on cpu; return the "
               "batch's own dtype and device"),
    ("none", "returns NoneType, not a tensor"),
])
def test_a_plugin_augmentation_that_returns_no_batch_is_named(
        mode: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An augmentation returning a batch one example short, of float64, or None was blamed
    on the model ("maps a training batch of 2 examples to outputs of shape (1, 2)", "mat1
    and mat2 must have the same dtype", "'NoneType' object has no attribute 'shape'"): the
    augmentation is named, after a built-in one that is fine."""
    path = _plugin_suite(tmp_path, "lab_aug", BAD_AUGMENTATION, model="{name: mlp, hidden: [4]}")
    augmentations = f"[gaussian_noise, {{name: bad, mode: {mode}}}]"
    path.write_text(path.read_text().replace(
        "  epochs: 2\n", f"  epochs: 2\n  augmentation: {augmentations}\n"))
    assert cli.main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == (f"{path}: fixed.augmentation[1]: on a training batch of "
                                       f"shape (2, 2): {said}\n")
    path.write_text(path.read_text().replace(f"mode: {mode}", "mode: ok"))
    assert cli.main(["validate", str(path)]) == 0


MISDECLARED = '''\
import numpy as np
from pydantic import Field
from nnbench.data import DataShape, HeldOutParams, split
from nnbench.data.checks import Source, source_key
from nnbench.registry import ComponentInfo, register


class P(HeldOutParams):
    features: int = Field(2, description="features it builds")
    examples: int = Field(200, description="examples it builds")


def source(p):  # its content named: checked once, then known to have passed
    return Source("dataset 'said'", key=source_key("said", p.features, p.examples))


def build(p, seed, device):
    x = np.random.default_rng(0).normal(size=(p.examples, p.features)).astype(np.float32)
    return split(x, (x[:, 0] > 0).astype(np.int64), p, seed=seed, device=device,
                 targets="class", num_classes=2, source=source(p))


def shape(p):  # what it says it builds, whatever it builds
    return DataShape(examples=200, test=None, input_shape=(2,), targets="class", num_classes=2)


register(ComponentInfo(kind="dataset", name="said", build=build, params=P, doc="declares (2,)",
                       attrs={"targets": "class", "input": "vector", "shape": shape,
                              "source": source}))
'''


@pytest.mark.parametrize(("params", "built"), [
    ("features: 3", "says input (2,), class targets, 2 classes, dim 1, but it builds input "
                    "(3,), class targets, 2 classes, dim 1"),
    ("examples: 50", "plans splits of train 144, val 16, test 40, but it builds train 36, "
                     "val 4, test 10"),
])
def test_a_plugin_dataset_that_builds_other_than_it_declares_is_refused(
        params: str, built: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate's dry build, its size checks and the batch-size warnings read a dataset's
    declared shape; a plugin building 3 features or 50 examples where it declared 200 of 2
    trained on data none of them had checked. `run` now refuses it before anything is
    created; one building what it declares trains."""
    path = _plugin_suite(tmp_path, "lab_said", MISDECLARED, model="{name: mlp, hidden: [4]}",
                         dataset=f"{{name: said, {params}}}")
    for _ in range(2):  # its arrays pass (and are remembered as passed): refused again
        assert _run(path, f"sqlite:///{tmp_path / 'mlflow.db'}") == 2
        assert (f"{path}: task.dataset: dataset 'said': attrs['shape'] {built}; validate "
                f"checked the suite against the declared shape: make attrs['shape'] describe "
                f"what the build returns") in capsys.readouterr().err
        _nothing_created(tmp_path)
    path.write_text(path.read_text().replace(params, "features: 2"))
    assert _run(path, f"sqlite:///{tmp_path / 'mlflow.db'}") == 0


def test_a_plugin_dataset_whose_shape_function_raises_is_the_dataset_s_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A shape function that raised was reported as task.model: "the dry build of this
    configuration failed", naming neither the dataset nor the plugin's line."""
    broken = MISDECLARED.replace(
        "def shape(p):  # what it says it builds, whatever it builds\n",
        "def shape(p):  # what it says it builds, whatever it builds\n"
        "    raise RuntimeError('shape broke')\n")
    path = _plugin_suite(tmp_path, "lab_shapeless", broken, model="{name: mlp, hidden: [4]}",
                         dataset="{name: said}")
    with isolated_registry():
        assert cli.main(["validate", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{path}: task.dataset: dataset 'said': its declared shape (attrs['shape']) " \
           f"failed: RuntimeError: shape broke ({tmp_path / 'lab_shapeless.py'}, line " in err, err
    assert "task.model" not in err
    # a ValueError of its own (not nnbench's size checks): also said with its line
    path.parent.joinpath("lab_shapeless.py").write_text(broken.replace(
        "RuntimeError('shape broke')", "ValueError('bad shape')"))
    with isolated_registry():
        assert cli.main(["validate", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "task.dataset: dataset 'said': its declared shape (attrs['shape']) failed: " \
           "ValueError: bad shape (" in err, err


NOT_A_MODULE = '''\
import torch
from nnbench.registry import ComponentInfo, register

register(ComponentInfo(kind="model", name="fn", build=lambda p, **c: torch.relu,
                       doc="a function, not a module"))
'''


def test_a_plugin_model_whose_build_returns_no_module_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A build returning a function failed as "the dry build of this configuration failed:
    AttributeError: 'builtin_function_or_method' object has no attribute 'state_dict'"."""
    path = _plugin_suite(tmp_path, "lab_fn", NOT_A_MODULE, model="fn")
    assert cli.main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"{path}: task.model: cannot build model 'fn' for inputs of shape (2,): model 'fn': "
        f"its build returned builtin_function_or_method, not a torch.nn.Module instance\n")


HIDDEN_PARAMETER = '''\
import torch
from pydantic import Field
from torch import nn
from nnbench.registry import ComponentInfo, Params, register


class P(Params):
    beta: float = Field(1.0, gt=0, description="slope")


class Scaled(nn.Module):  # no extra_repr: its repr does not show beta
    def __init__(self, beta):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return torch.tanh(self.beta * x)


register(ComponentInfo(kind="activation", name="scaled", params=P,
                       build=lambda p, **c: Scaled(p.beta), doc="tanh(beta x)",
                       attrs={"gain": lambda p: ("tanh", None)}))
'''


@pytest.mark.parametrize("varied", [
    "grid: {activation.beta: [0.5, 2.0]}\n",
    "tune: {space: {activation.beta: {type: float, low: 0.5, high: 2.0}}, trials: 2}\n",
])
def test_a_plugin_parameter_its_module_does_not_show_still_counts(
        varied: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Whether two configurations train alike was judged from the model's repr and initial
    weights: a plugin activation whose parameter its repr does not show made beta 0.5 and
    2 look identical, and the grid (or the tuned range) was refused."""
    path = _plugin_suite(tmp_path, "lab_scaled", HIDDEN_PARAMETER,
                         model="{name: mlp, hidden: [4]}")
    path.write_text(path.read_text().replace("  epochs: 2\n",
                                             "  epochs: 2\n  activation: scaled\n") + varied)
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err


GAIN_BY_PARAMS = '''\
from pydantic import Field
from torch import nn
from nnbench.registry import ComponentInfo, Params, register


class P(Params):
    slope: float = Field(0.0, ge=0, description="negative slope")


register(ComponentInfo(kind="activation", name="lab_leaky", params=P,
                       build=lambda p, **c: nn.LeakyReLU(p.slope), doc="leaky",
                       attrs={"gain": lambda p: ("relu", None) if p.slope == 0
                              else ("leaky", p.slope)}))
'''


def test_an_activation_gain_torch_does_not_take_for_some_parameters_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A gain right for the example parameters and wrong for others ('leaky' for
    'leaky_relu') failed as "cannot build model 'mlp' ...: Unsupported nonlinearity leaky":
    the activation, and what its gain gave, are named."""
    path = _plugin_suite(tmp_path, "lab_gain", GAIN_BY_PARAMS, model="{name: mlp, hidden: [4]}")
    path.write_text(path.read_text().replace(
        "  epochs: 2\n", "  epochs: 2\n  activation: {name: lab_leaky, slope: 0.1}\n"
                         "  init: {name: xavier_normal, gain: activation}\n"))
    assert cli.main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"{path}: fixed.activation: activation 'lab_leaky': its attrs['gain'] gave ('leaky', "
        f"0.1) for these parameters, which torch.nn.init.calculate_gain does not take "
        f"(Unsupported nonlinearity leaky)\n")


@pytest.mark.parametrize(("dataset", "loss", "outs", "need", "task"), [
    ("{name: circles, n_samples: 200}", "cross_entropy", 10, 2,
     "dataset 'circles' has 2 classes; loss 'cross_entropy' takes 2"),
    ("{name: circles, n_samples: 200}", "bce", 2, 1,
     "dataset 'circles' has 2 classes; loss 'bce' takes 1"),
    ("diabetes", "mse", 3, 1, "dataset 'diabetes' has 1 regression target; loss 'mse' takes 1"),
])
def test_a_plugin_model_whose_output_width_ignores_the_task_is_refused(
        dataset: str, loss: str, outs: int, need: int, task: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Cross-entropy over 10 logits takes 2-class labels: without the check such a model
    trains and its trial is "finished", meaninglessly."""
    path = _plugin_suite(tmp_path, "lab_wide", WIDE, dataset=dataset, loss=loss,
                         model=f"{{name: widenet, outs: {outs}}}")
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: task.model: model 'widenet' (class lab_wide.WideNet, "
                          f"from plugin 'lab_wide') gives {outs} outputs per example in "
                          f"training but the task needs {need} output"), err
    assert f"({task})" in err
    assert "build the output layer with the `outputs` argument" in err
    assert "Traceback" not in err

    assert _run(path, f"sqlite:///{tmp_path / 'mlflow.db'}") == 2  # nothing trains
    assert f"gives {outs} outputs per example" in capsys.readouterr().err
    _nothing_created(tmp_path)


def test_a_plugin_model_with_the_right_width_passes(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = _plugin_suite(tmp_path, "lab_wide", WIDE, model="{name: widenet, outs: 2}")
    assert cli.main(["validate", str(path)]) == 0
    assert f"{path}: ok" in capsys.readouterr().out


TYPED = '''\
"""Parameters of every type with a faithful JSON form; the build checks it gets them back."""

import datetime
import enum
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from nnbench.registry import ComponentInfo, Params, register


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Layer(Params):
    depth: int = 2
    tags: tuple[str, ...] = ()


class TypedParams(Params):
    notes: Path | None = None
    since: datetime.datetime | None = None
    day: datetime.date = datetime.date(2024, 1, 1)
    every: datetime.timedelta = datetime.timedelta(hours=1)
    colour: Colour = Colour.RED
    scale: Decimal = Decimal("1.10")
    pair: tuple[int, float] = (1, 2.0)
    layer: Layer = Layer()
    counts: dict[str, int] = {}
    ident: uuid.UUID | None = None
    mode: Literal["a", "b"] = "a"
    anything: Any = None


SEEN = []


def build_typed(params, *, input_shape, outputs, activation, gain, init, norm, dropout,
                generator):
    SEEN.append(params)
    assert isinstance(params.colour, Colour) and isinstance(params.layer, Layer)
    assert isinstance(params.scale, Decimal) and isinstance(params.every, datetime.timedelta)
    assert params.notes is None or isinstance(params.notes, Path)
    hidden, out = nn.Linear(int(np.prod(input_shape)), 8), nn.Linear(8, outputs)
    init(hidden, gain, generator)
    init(out, ("linear", None), generator)
    return nn.Sequential(nn.Flatten(), hidden, activation(), out)


register(ComponentInfo(kind="model", name="typed", build=build_typed, params=TypedParams,
                       doc="a net with parameters of many types"))
'''

TYPED_MODEL = ("{name: typed, notes: data/notes.txt, since: '2024-05-01T12:00:00Z', "
               "colour: blue, scale: '2.50', pair: [3, 4], layer: {depth: 3, tags: [a, b]}, "
               "counts: {b: 2, a: 1}, ident: 12345678-1234-5678-1234-567812345678, "
               "anything: [1, 2]}")


def test_plugin_parameters_of_rich_types_enter_the_trial_id_as_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Path, datetime, timedelta, Enum, Decimal, tuples, a nested model, a mapping, UUID:
    written in pydantic's JSON form, read back as the same values for every build."""
    import datetime
    import json
    import sys
    from decimal import Decimal

    from nnbench.config.spec import TrialSpec

    path = _plugin_suite(tmp_path, "lab_typed", TYPED, model=TYPED_MODEL)
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert f"{path}: ok" in capsys.readouterr().out
    spec = load_suite(path).trials()[0]
    model = spec.canonical()["model"]
    assert model == {"name": "typed", "notes": "data/notes.txt",
                     "since": "2024-05-01T12:00:00Z", "day": "2024-01-01", "every": "PT1H",
                     "colour": "blue", "scale": "2.50", "pair": [3, 4.0],
                     "layer": {"depth": 3, "tags": ["a", "b"]}, "counts": {"a": 1, "b": 2},
                     "ident": "12345678-1234-5678-1234-567812345678", "mode": "a",
                     "anything": [1, 2]}
    built = sys.modules["lab_typed"].SEEN[-1]  # the dry build's model got the typed values
    assert built.notes == Path("data/notes.txt") and built.scale == Decimal("2.50")
    assert built.since == datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc)
    assert built.colour.name == "BLUE" and built.layer.tags == ("a", "b")
    assert registry.label("model", spec.model).startswith("typed(anything=[1, 2], colour=blue,")

    again = TrialSpec.from_canonical(json.loads(json.dumps(spec.canonical())))
    assert again == spec and again.trial_id == spec.trial_id  # the queue's JSON round trip
    with isolated_registry():  # a fresh process: the same id
        assert load_suite(path).trials()[0].trial_id == spec.trial_id
    same = path.with_name("same.yaml")  # the same values written another way: the same id
    same.write_text(path.read_text().replace("[3, 4]", "[3, 4.0]")
                    .replace("{b: 2, a: 1}", "{a: 1, b: 2}").replace("name: lab\n", "name: same\n"))
    assert load_suite(same).trials()[0].trial_id == spec.trial_id


UNSTABLE = {  # a parameter declaration -> how `nnbench list` shows its type
    "tags: set[str] = set()": ("tags", "set[str]", "a set's order changes between processes"),
    "tags: frozenset[int] = frozenset()": ("tags", "frozenset[int]", "a set's order changes"),
    "key: SecretStr | None = None": ("key", "SecretStr | None", "SecretStr has no JSON form"),
    "blob: bytes = b''": ("blob", "bytes", "bytes has no JSON form"),
    "hook: Callable[[int], int] | None = None": (
        "hook", "Callable[[int], int] | None", "has no JSON form"),
    "grid: dict[tuple[int, int], float] = {}": (
        "grid", "dict[tuple[int, int], float]", "keys must be str, int, Literal or Enum"),
    "inner: Inner = Inner()": ("inner", "Inner", "its parameter 'tags' (set[str])"),
}


@pytest.mark.parametrize("declaration", list(UNSTABLE))
def test_plugin_parameter_types_without_a_stable_json_form_are_refused(
        declaration: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused when the plugin registers, naming the parameter, its type and the allowed
    types; the other files on the command line are still checked."""
    field, type_text, why = UNSTABLE[declaration]
    text = ("from collections.abc import Callable\nfrom pydantic import SecretStr\n"
            "from torch import nn\nfrom nnbench.registry import ComponentInfo, Params, register\n"
            "class Inner(Params):\n    tags: set[str] = set()\n"
            f"class OddParams(Params):\n    {declaration}\n"
            "register(ComponentInfo(kind='model', name='odd', build=lambda p, **c: "
            "nn.Identity(), params=OddParams, doc='a net'))\n")
    bad = _plugin_suite(tmp_path, "lab_odd", text, name="bad", model="odd")
    other = tmp_path / "other.yaml"  # checked after the bad one, with a problem of its own
    other.write_text(SUITE.format(module="lab_components").replace("epochs: 3", "epochs: 0"))
    (tmp_path / "lab_components.py").write_text(PLUGIN)
    assert cli.main(["validate", str(bad), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}: plugins[0]: plugin 'lab_odd': invalid registration: model "
                          f"'odd': parameter {field!r} of OddParams has type {type_text}, which "
                          f"cannot enter the trial_id: "), err
    assert why in err
    assert "allowed parameter types: bool, int, float, str, None, Literal, Enum, Path, " \
           "datetime" in err and "a nested Params model" in err
    assert "lab_odd.py, line 9)" in err  # the register() call
    assert f"{other}: fixed.epochs: " in err  # the next file was still checked
    assert "Traceback" not in err
    assert _run(bad, f"sqlite:///{tmp_path / 'mlflow.db'}") == 2
    _nothing_created(tmp_path)


def test_a_value_without_a_faithful_json_form_is_refused_at_validation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An `Any` parameter takes whatever the file holds; a YAML set would enter the
    trial_id in an order that changes between processes."""
    model = TYPED_MODEL.replace("anything: [1, 2]", "anything: !!set {a: null, b: null}")
    path = _plugin_suite(tmp_path, "lab_typed", TYPED, model=model)
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: task.model.anything: model 'typed': parameter 'anything' cannot enter " \
           f"the trial_id: " in err, err
    assert "(set) is written as" in err and "allowed parameter types: bool, int" in err
    assert "Traceback" not in err


TYPE_ERROR = '''\
from pydantic import field_validator
from torch import nn
from nnbench.registry import ComponentInfo, Params, register


class UnluckyParams(Params):
    width: int = 12

    @field_validator("width")
    @classmethod
    def _not_thirteen(cls, value):
        if value == 13:
            raise TypeError("thirteen is unlucky")  # pydantic wraps only ValueError
        return value


register(ComponentInfo(kind="model", name="unlucky", build=lambda p, **c: nn.Identity(),
                       params=UnluckyParams, doc="a net"))
'''

BROKEN_DIGEST = '''\
import numpy as np
from nnbench.data import DataShape, HeldOutParams, split
from nnbench.registry import ComponentInfo, register


def digest(params):
    raise RuntimeError("the lab server is down")


def build(p, seed, device):
    x = np.random.default_rng(0).normal(size=(100, 2))
    return split(x, (x[:, 0] > 0).astype(int), p, seed=seed, device=device, targets="class",
                 num_classes=2)


register(ComponentInfo(kind="dataset", name="remote", build=build, params=HeldOutParams,
                       doc="data from a server",
                       attrs={"targets": "class", "input": "vector", "digest": digest,
                              "shape": lambda p: DataShape(examples=100, test=None,
                                                           input_shape=(2,), targets="class",
                                                           num_classes=2)}))
'''


@pytest.mark.parametrize(("module", "text", "kwargs", "fragments"), [
    ("lab_unlucky", TYPE_ERROR, {"model": "{name: unlucky, width: 13}"},
     ["task.model: model 'unlucky' (plugin 'lab_unlucky'): its params model UnluckyParams "
      "failed on {'width': 13} (dict): TypeError: thirteen is unlucky",
      "lab_unlucky.py, line 13)"]),
    ("lab_remote", BROKEN_DIGEST, {"model": "{name: mlp, hidden: [4]}", "dataset": "remote"},
     ["could not be checked: RuntimeError: the lab server is down", "lab_remote.py, line 7)"]),
])
def test_a_plugin_raising_is_one_file_s_problem_never_a_traceback(
        module: str, text: str, kwargs: dict[str, str], fragments: list[str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`nnbench validate bad.yaml good.yaml`: the bad file's problem, then the good one
    checked all the same (its own problem printed too), exit 2."""
    bad = _plugin_suite(tmp_path, module, text, name="bad", **kwargs)
    good = tmp_path / "good.yaml"
    good.write_text(SUITE.format(module="lab_components").replace("name: lab\n", "name: good\n"))
    (tmp_path / "lab_components.py").write_text(PLUGIN)
    flawed = tmp_path / "flawed.yaml"
    flawed.write_text(good.read_text().replace("name: good\n", "name: flawed\n")
                      .replace("epochs: 3", "epochs: 0"))
    assert cli.main(["validate", str(bad), str(good), str(flawed)]) == 2
    out, err = capsys.readouterr()
    assert f"{good}: ok — 2 configurations" in out  # reported ok beside the others' problems
    assert str(bad) not in out and str(flawed) not in out
    assert err.startswith(f"{bad}: ")
    for fragment in fragments:
        assert fragment in err, err
    assert f"{flawed}: fixed.epochs: " in err  # checked after the bad file
    assert str(good) not in err and "Traceback" not in err
    suites, problems = cli._load_each([str(bad), str(good), str(flawed)])
    assert [s.path for s in suites] == [str(good)]  # the good file checked and valid
    assert [p.partition(":")[0] for p in problems] == [str(bad), str(flawed)]
    assert _run(bad, f"sqlite:///{tmp_path / 'mlflow.db'}") == 2
    _nothing_created(tmp_path)


def test_built_in_parameters_are_stored_as_before() -> None:
    """JSON mode changes no built-in value: stores written before keep their trial_ids."""
    from nnbench.registry import _freeze

    for info in registry.list_components():
        if info.source != registry.BUILTIN or "contract_example" in info.attrs:
            continue
        spec = registry.resolve(info.kind, {"name": info.name, **info.example})
        python = info.params.model_validate(dict(info.example)).model_dump()
        assert spec.params == _freeze(python), info.name
        assert not registry.param_type_problems(info.params), info.name


def test_a_plugin_model_that_keeps_a_part_between_builds_validates(
        lab: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Validation counts nnbench's own models on the meta device before the dry build; a
    plugin's model is not built there: one that caches a layer across builds (a shared
    stem) would keep a meta layer, and its real build would fail."""
    cached = PLUGIN.replace(
        "    hidden = nn.Linear(int(np.prod(input_shape)), params.width)\n",
        "    key = (int(np.prod(input_shape)), params.width)\n"
        "    hidden = STEM.setdefault(key, nn.Linear(*key))  # kept between builds\n",
    ).replace("class TinyNetParams(Params):", "STEM = {}\n\n\nclass TinyNetParams(Params):")
    assert "STEM" in cached
    suite = lab("lab_cached", cached)
    with isolated_registry():
        assert cli.main(["validate", str(suite)]) == 0, capsys.readouterr().err
    assert "ok" in capsys.readouterr().out
