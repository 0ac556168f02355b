"""The npe2 manifest validates against the installed package and every python_name imports."""
import importlib

import npe2


def test_manifest_validates_and_imports():
    pm = npe2.PluginManifest.from_distribution("napari-fast-style")
    assert pm.name == "napari-fast-style"
    pm.validate_imports()
    commands = {c.id: c for c in pm.contributions.commands}
    assert "napari-fast-style.stylize_widget" in commands
    for c in pm.contributions.commands:
        mod, attr = c.python_name.split(":")
        assert callable(getattr(importlib.import_module(mod), attr))
    assert {s.key for s in pm.contributions.sample_data} >= {"astronaut", "coffee"}


def test_sample_data_without_torch():
    import subprocess
    import sys

    code = ("import sys; from napari_fast_style._sample_data import astronaut; d = astronaut(); "
            "assert d[0][0].shape == (512, 512, 3); assert 'torch' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
