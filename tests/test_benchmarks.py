"""The benchmarks measure the checkout they sit in, even when another copy of the package is installed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["style_quality", "train_speed", "sr_quality", "optimize_quality", "speed"])
def test_benchmark_imports_its_own_checkout(tmp_path, script):
    # a decoy package that shadows the real one for anything that does not put the checkout first on sys.path
    decoy = tmp_path / "decoy" / "napari_fast_style"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('decoy package imported instead of the checkout')\n")
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); sys.argv = ['x']; "
            f"import {script}, napari_fast_style; print(napari_fast_style.__file__)")
    env = {**os.environ, "PYTHONPATH": str(decoy.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip().splitlines()[-1]).resolve().is_relative_to(ROOT)
