"""Plugin discovery through entry points, the example plugin, broken plugins, in-process use."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ndcore import hookimpl
from ndcore.errors import PluginError
from ndcore.models import ModelAdapter
from ndcore.plugins import PluginManager

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "plugins" / "ndcore-example-plugin"


def run_cli(args, extra_path=None, cwd=None):
    env = dict(os.environ, COLUMNS="250")  # rich wraps table cells to the terminal width
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(p) for p in extra_path] + [env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "ndcore", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    """The example plugin installed (as pip would for a user) into a private directory."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / EXAMPLE.name  # pip builds in the source tree
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation",
                    "--no-deps", "--no-compile", "--target", str(target), str(source)],
                   check=True, timeout=300)
    return target


def test_builtin_plugins_are_listed():
    out = run_cli(["plugins"], )
    assert out.returncode == 0, out.stderr
    for name in ("torchvision", "python", "broden", "synthetic", "demo"):
        assert name in out.stdout


def test_example_plugin_discovered_through_entry_point(example_site):
    out = run_cli(["plugins"], extra_path=[example_site])
    assert out.returncode == 0, out.stderr
    assert "ndcore-example-plugin" in out.stdout
    text = " ".join(out.stdout.split())
    assert "example: a tiny CNN, tinycnn:WIDTH" in text  # descriptions are shown
    assert "example: in-memory stripes, stripes:N" in text


def test_example_plugin_adapters_run_a_dissection(example_site, tmp_path):
    out = run_cli(["dissect", "--model", "tinycnn:4", "--random-init", "--layers", "2",
                   "--dataset", "stripes:24", "--out", str(tmp_path / "run"), "--workers", "0",
                   "--quiet", "--no-report", "--max-images", "20", "--categories", "object"],
                  extra_path=[example_site])
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "run" / "2" / "tally.csv").is_file()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["images"] == 20 and config["dataset"]["categories"] == ["object"]


def test_example_plugin_source_passes_the_item_checks():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import ndcore_example_plugin as example
        from ndcore.plugin_api import check_items

        check_items(example.Stripes(16))
    finally:
        sys.path.remove(str(EXAMPLE))
        sys.modules.pop("ndcore_example_plugin", None)


def test_broken_plugin_is_reported_and_others_keep_working(tmp_path):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ndcore]\nbroken = no_such_module_for_ndcore\n")
    out = run_cli(["plugins"], extra_path=[tmp_path])
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "broken" in text and "ModuleNotFoundError" in text
    assert "torchvision" in text  # the others still load
    bad = run_cli(["dissect", "--model", "nosuch:x", "--layers", "a", "--dataset", "synthetic",
                   "--out", str(tmp_path / "o")], extra_path=[tmp_path])
    assert bad.returncode == 2
    assert "no model adapter 'nosuch'" in bad.stdout and "failed to load: broken" in bad.stdout


class InProcessPlugin:
    @hookimpl
    def ndcore_register_models(self, register):
        from torch import nn

        register("dummy", lambda target, request: ModelAdapter(f"dummy:{target}", nn.Identity()),
                 description="test model")


def test_register_use_unregister_in_process():
    pm = PluginManager(load_entry_points=False)
    pm.register(InProcessPlugin(), name="inproc")
    adapter = pm.resolve("model", "dummy:abc", None)[0]
    assert adapter.spec == "dummy:abc"
    assert [i.models for i in pm.plugin_infos()] == [["dummy"]]
    pm.unregister("inproc")
    with pytest.raises(PluginError, match="no model adapter 'dummy'"):
        pm.resolve("model", "dummy:abc", None)[0]


def test_unknown_adapter_suggests():
    pm = PluginManager()
    with pytest.raises(PluginError, match="did you mean: torchvision"):
        pm.resolve("model", "torchvison:resnet18", None)


class TwinPlugin:
    """One class registered as two plugins: each registration names its own plugin."""

    def __init__(self, tag):
        self.tag = tag

    @hookimpl
    def ndcore_register_models(self, register):
        from torch import nn

        register("twin", lambda target, request: ModelAdapter(f"{self.tag}:{target}",
                                                              nn.Identity()))


class SilentlyBroken:
    @hookimpl
    def ndcore_register_models(self):  # takes no register, and raises
        raise RuntimeError("no register")


def test_each_registration_names_its_plugin():
    pm = PluginManager(load_entry_points=False)
    pm.register(TwinPlugin("a"), name="a", distribution="dist-a")
    pm.register(TwinPlugin("b"), name="b", distribution="dist-b")
    pm.register(SilentlyBroken(), name="broken")
    assert [(r.plugin, r.qualified) for r in pm.adapters("model")] == [
        ("a", "dist-a:twin"), ("b", "dist-b:twin")]
    assert pm.resolve("model", "dist-b:twin:x", None)[0].spec == "b:x"
    with pytest.raises(PluginError, match="say which: dist-a:twin:x or dist-b:twin:x"):
        pm.find("model", "twin:x")
    assert pm.infos["broken"].error == "ndcore_register_models raised RuntimeError: no register"


def test_building_the_parser_imports_neither_plugins_nor_torch():
    code = ("import sys; from ndcore.cli import build_parser; build_parser(); "
            "print([m for m in ('torch', 'ndcore.plugins', 'ndcore_builtins') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_adapter_help_is_listed_when_shown(monkeypatch):
    import argparse

    from ndcore.cli import adapter_help

    monkeypatch.setattr(adapter_help, "adapter_listing", lambda kind: f"{kind}s (100% of them)")
    parser = argparse.ArgumentParser(formatter_class=adapter_help.AdapterHelpFormatter)
    adapter_help.add_adapter_option(parser, "--model", "model", help="a spec")
    assert "a spec. Installed: models (100% of them)" in " ".join(parser.format_help().split())
