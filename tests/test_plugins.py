"""Local plug-ins: a user's op in a plain .py file, used from a space YAML via ``plugins:``, through profile,
distill-blocks, search, extract and reload; ``--plugins``; experiment YAMLs; the errors a plug-in can cause."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import search_spaces
from tocsr_nas.cli import main
from tocsr_nas.compact import CompactUNet
from tocsr_nas.errors import ConfigError
from tocsr_nas.ops.registry import OPS, build_op
from tocsr_nas.plugins import load_plugins, loaded_plugins
from tocsr_nas.registry import Registry
from tocsr_nas.testing import check_op

from .conftest import MICRO_TEACHER

PLUGIN = '''
"""A user's op: a bottleneck residual block (1x1 down, 3x3, 1x1 up) with the time embedding added."""
from torch import nn

from tocsr_nas.ops import ResnetOp, register_op


class Bottleneck(ResnetOp):
    def __init__(self, unit, ratio):
        super().__init__()
        mid = max(4, int(unit.out_channels * ratio))
        self.down = nn.Conv2d(unit.in_channels, mid, 1)
        self.temb = nn.Linear(unit.temb_channels, mid)
        self.conv = nn.Conv2d(mid, mid, 3, padding=1)
        self.up = nn.Conv2d(mid, unit.out_channels, 1)
        self.skip = nn.Identity() if unit.in_channels == unit.out_channels else nn.Conv2d(unit.in_channels, unit.out_channels, 1)

    def block(self, hidden_states, temb):
        h = self.down(hidden_states) + self.temb(temb)[:, :, None, None]
        return self.skip(hidden_states) + self.up(nn.functional.silu(self.conv(nn.functional.silu(h))))


@register_op("{name}", kinds={{"resnet"}}, short="{short}")
def {name}(unit, teacher, *, ratio: float = 0.25):
    return Bottleneck(unit, ratio)
'''

BROKEN = '''
from tocsr_nas.ops import register_op


@register_op("broken_op", kinds={"resnet"})
def broken_op(unit, teacher):
    raise RuntimeError("boom at " + unit.path)
'''

SPACE = f"""
name: with-plugin
teacher: {MICRO_TEACHER}
plugins: [../user/my_ops.py]
candidates:
  resnet: [teacher, {{op: bottleneck, ratio: 0.25}}]
  transformer: [teacher, identity]
stages:
  - {{name: down, units: ["down_blocks.0.*"]}}
"""


def write_plugin(folder: Path, name: str = "bottleneck", short: str = "bneck", file: str = "my_ops.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file
    path.write_text(PLUGIN.format(name=name, short=short))
    return path


@pytest.fixture(scope="module")
def plugin_space(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("plugin")
    plugin = write_plugin(root / "user")
    (root / "spaces").mkdir()
    space = root / "spaces" / "space.yaml"
    space.write_text(SPACE)
    return plugin, space


@pytest.mark.slow  # minutes on a loaded 2-core machine; the plug-in parts are also covered by the fast tests below
def test_user_op_from_a_py_file_profiled_distilled_searched_extracted_reloaded(
        plugin_space: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    plugin, space = plugin_space
    caplog.set_level("INFO", logger="tocsr_nas.plugins")
    table = tmp_path / "cost.json"
    assert main(["profile", "--space", str(space), "--out", str(table), "--no-ptflops", "--json"]) == 0
    assert f"loaded plugins: {plugin.resolve()}" in caplog.text
    assert "bneck" in table.read_text()
    capsys.readouterr()

    recipe = tmp_path / "distill.yaml"
    recipe.write_text(f"space: {space}\nsteps: 2\nbatch_size: 1\nheld_out_samples: 1\nlatents: {{source: gaussian}}\n")
    assert main(["distill-blocks", "--config", str(recipe), "--out", str(tmp_path / "surrogates")]) == 0
    report = json.loads((tmp_path / "surrogates" / "report.json").read_text())
    assert report["counts"]["done"] > 0 and "bneck" in (tmp_path / "surrogates" / "relative_errors.csv").read_text()

    search = tmp_path / "search.yaml"
    search.write_text(f"space: {space}\nstrategy: random\nbudget: 2\neps: [5.0]\nsurrogates: {tmp_path / 'surrogates'}\n"
                      "validation: {latents: {source: gaussian}, count: 2, batch_size: 2}\n")
    assert main(["search", "--config", str(search), "--out", str(tmp_path / "s"), "--quiet"]) == 0
    trials = [json.loads(line) for line in (tmp_path / "s" / "trials.jsonl").read_text().splitlines()]
    assert len([t for t in trials if t.get("state") == "complete"]) == 2
    capsys.readouterr()

    arch = "down:R=bneck(ratio=0.25)"
    assert main(["extract", str(tmp_path / "s"), "--pick", arch, "--out", str(tmp_path / "compact")]) == 0
    config = json.loads((tmp_path / "compact" / "config.json").read_text())
    assert config["plugins"] == {"bottleneck": str(plugin.resolve())}

    compact = CompactUNet.from_pretrained(tmp_path / "compact")
    assert type(compact.get_submodule("down_blocks.0.resnets.0")).__name__ == "Bottleneck"
    inputs = {"sample": torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(0)),
              "timestep": torch.tensor([10]), "encoder_hidden_states": torch.randn(1, 4, 32)}
    with torch.no_grad():
        assert torch.isfinite(compact(**inputs).sample).all()

    # a fresh process without the plug-in: one line naming the op and the plug-in to pass
    code = (f"from tocsr_nas.compact import CompactUNet\nfrom tocsr_nas.errors import ConfigError\n"
            f"try:\n    CompactUNet.from_pretrained({str(tmp_path / 'compact')!r})\n"
            f"except ConfigError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert len(out.splitlines()) == 1
    assert f"op 'bottleneck' comes from the plugin {plugin.resolve()}, which is not loaded: " \
           f"pass --plugins {plugin.resolve()}" in out


def test_the_conformance_suite_runs_on_a_plugin_op(plugin_space: tuple[Path, Path]) -> None:
    plugin, _ = plugin_space
    load_plugins([plugin])
    check_op("bottleneck", settings=[{"ratio": 0.25}, {"ratio": 0.5}])


def test_cli_plugins_flag_loads_once_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    plugin = write_plugin(tmp_path, name="cli_bottleneck", short="clib", file="cli_ops.py")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("plugins: [../user/my_ops.py]\n", "").replace("bottleneck", "cli_bottleneck"))
    assert main(["space", "show", str(space)]) == 2
    assert "unknown op 'cli_bottleneck'" in capsys.readouterr().err
    caplog.set_level("INFO", logger="tocsr_nas.plugins")
    assert main(["--plugins", f"{plugin},{plugin}", "--plugins", str(plugin), "space", "show", str(space)]) == 0
    assert "clib(ratio=0.25)" in capsys.readouterr().out
    assert caplog.text.count("loaded plugins:") == 1  # the same plug-in twice is loaded once
    assert loaded_plugins().count(str(plugin.resolve())) == 1


def test_experiment_yaml_plugins_are_relative_to_the_yaml(tmp_path: Path) -> None:
    from tocsr_nas.experiments.runner import resolve

    plugin = write_plugin(tmp_path / "exp" / "ops", name="exp_bottleneck", short="expb", file="exp_ops.py")
    (tmp_path / "exp" / "base.yaml").write_text("plugins: [ops/exp_ops.py]\nstages: [search]\n")
    child = tmp_path / "exp" / "run.yaml"
    child.write_text("base: base.yaml\nname: plug\n")
    [(_, config)] = resolve(child)
    assert config.plugins == [str(plugin.resolve())]
    assert "exp_bottleneck" in OPS and OPS.origin("exp_bottleneck") == f"plugin {plugin.resolve()}"


def test_plugin_errors_are_one_line_and_name_the_plugin(tmp_path: Path, micro_teacher) -> None:
    with pytest.raises(ConfigError, match=r"^space.yaml: plugins: plugin file not found: .*missing.py$"):
        load_plugins(["missing.py"], base=tmp_path, source="space.yaml")
    with pytest.raises(ConfigError, match="plugin module 'no_such_pkg.ops' not found"):
        load_plugins(["no_such_pkg.ops"])
    (tmp_path / "syntax.py").write_text("def broken(:\n")
    with pytest.raises(ConfigError, match=r"plugin .*syntax.py failed to load: SyntaxError"):
        load_plugins(["syntax.py"], base=tmp_path)

    broken = tmp_path / "broken.py"
    broken.write_text(BROKEN)
    with OPS.scoped():
        load_plugins([broken])
        unit = next(u for u in micro_teacher_units(micro_teacher) if u.kind == "resnet")
        with pytest.raises(ConfigError) as err:
            build_op("broken_op", unit, micro_teacher.unet.get_submodule(unit.path))
        message = str(err.value)
        assert "\n" not in message
        assert f"plugin {broken.resolve()}: op 'broken_op' failed on unit {unit.path}: RuntimeError: boom" in message

        duplicate = write_plugin(tmp_path / "dup", name="broken_op", short="dup", file="dup.py")
        with pytest.raises(ConfigError, match=rf"op 'broken_op' is already registered by plugin {broken.resolve()} "
                                              rf"\(registered again by plugin {duplicate.resolve()}\)"):
            load_plugins([duplicate])


def test_compact_and_sr_folders_record_their_plugins_and_name_a_missing_one(tmp_path: Path, micro_teacher) -> None:
    from diffusers import DDPMScheduler

    from tocsr_nas.compact import UnitChoice
    from tocsr_nas.sr.adapt import adapt_unet
    from tocsr_nas.sr.model import CONFIG_NAME, SRModel, load_sr_model, save_sr_model
    from tocsr_nas.vae import build_vae

    from .test_sr import MICRO_VAE

    plugin = write_plugin(tmp_path / "user", name="sr_bottleneck", short="srb", file="sr_ops.py")
    unit = next(u for u in micro_teacher_units(micro_teacher) if u.kind == "resnet")
    with OPS.scoped():
        load_plugins([plugin])
        compact = CompactUNet.build(micro_teacher.unet, {unit.path: UnitChoice("sr_bottleneck", {"ratio": 0.5}, unit)})
        compact.save_pretrained(tmp_path / "compact")
        config = json.loads((tmp_path / "compact" / "config.json").read_text())
        assert config["plugins"] == {"sr_bottleneck": str(plugin.resolve())}
        assert type(CompactUNet.from_pretrained(tmp_path / "compact").get_submodule(unit.path)).__name__ == "Bottleneck"
        net = adapt_unet(compact, micro_teacher.context(1)[0].detach())
        model = SRModel(net=net.eval(), vae=build_vae(MICRO_VAE).eval(), scheduler=DDPMScheduler(),
                        kind="sr-onestep", scale=4, timestep=200)
        folder = save_sr_model(model, tmp_path / "sr")
        backbone = json.loads((folder / CONFIG_NAME).read_text())["backbone"]
        assert backbone["plugins"] == {"sr_bottleneck": str(plugin.resolve())}
        loaded = load_sr_model(folder)  # with the plug-in loaded, the op is rebuilt from it
        assert type(loaded.net.unet.get_submodule(unit.path)).__name__ == "Bottleneck"
    for load, source in ((lambda: CompactUNet.from_pretrained(tmp_path / "compact"), tmp_path / "compact" / "config.json"),
                         (lambda: load_sr_model(folder), folder / CONFIG_NAME)):
        with pytest.raises(ConfigError) as err:  # without it: one line naming the op and the plug-in to pass
            load()
        message = str(err.value)
        assert "\n" not in message and message.startswith(str(source))
        assert f"op 'sr_bottleneck' comes from the plugin {plugin.resolve()}, which is not loaded: " \
               f"pass --plugins {plugin.resolve()}" in message


def micro_teacher_units(teacher):
    from tocsr_nas.units import build_unit_graph, unit_infos

    return unit_infos(build_unit_graph(teacher.unet, teacher.example_inputs()))


def test_registry_basics() -> None:
    registry: Registry[int] = Registry("widget", group="tocsr_nas.test_widgets", key="widget")
    registry.register("one", 1)
    registry.mark_unavailable("two", "needs the package 'two' (pip install 'tocsr-nas[two]')")
    assert registry.names() == ["one"] and registry.get("one") == 1
    with pytest.raises(ConfigError, match=r"^widget: unknown widget 'three' \(allowed: one\)$"):
        registry.get("three")
    with pytest.raises(ConfigError, match=r"widget 'two' is unavailable: needs the package 'two' \(pip install"):
        registry.get("two")
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("one", 2)


def test_shipped_spaces_pass_the_space_suite() -> None:
    from tocsr_nas.testing import check_space

    for name in search_spaces.available_spaces():
        check_space(search_spaces.load(name))


def test_bad_plugins_on_the_command_line_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from .badinput import assert_refused

    assert_refused(["--plugins", str(tmp_path / "missing.py"), "space", "list"], tmp_path, capsys,
                   match="--plugins: plugins: plugin file not found")
    (tmp_path / "bad.py").write_text("raise ImportError('needs the package xyz')\n")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("../user/my_ops.py", "bad.py"))
    assert_refused(["space", "show", str(space)], tmp_path, capsys,
                   match="plugins: plugin " + str((tmp_path / "bad.py").resolve()) + " failed to load: ImportError")
    space.write_text(SPACE.replace("[../user/my_ops.py]", "my_ops.py"))
    assert_refused(["space", "show", str(space)], tmp_path, capsys,
                   match="plugins: must be a list of .py files or module names")
