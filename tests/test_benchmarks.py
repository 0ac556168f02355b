"""The benchmarks measure the checkout they sit in, even when another copy of the package is installed; the style
benchmark measures the photos it is told, with the spread of its means."""
from __future__ import annotations

import json
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


def test_style_quality_measures_the_photos_it_is_told_with_their_spread(monkeypatch):
    # --offset 8 skips the photos the rounds before the val/test split chose on; the standard errors come
    # from the per-photo spread, so a reader sees how far 8 (or 32) photos pin a mean down
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import style_quality; "
            "sys.exit(style_quality.main(sys.argv[1:]))")
    run = lambda *args: subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                                       cwd=ROOT)
    out = run("water_lilies-fast", "--n", "2", "--offset", "8", "--precision", "fp32", "--json")
    assert out.returncode == 0, out.stderr
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # undone after the test, unlike sys.path.insert
    import style_quality

    (row,) = json.loads(out.stdout)
    held = style_quality.holdout_photos(10)
    assert row["n"] == 2 and row["photos"] == [p.stem for p in held[8:10]]
    assert 0 < row["gap_closed_se"] < 0.2 and 0 < row["content_distance_se"] < 1.0
    bad = run("water_lilies-fast", "--n", "8", "--offset", "1000")
    assert bad.returncode != 0 and "does not fit" in bad.stderr
    out = run("water_lilies-fast", "--split", "test", "--n", "1", "--offset", "3", "--precision", "fp32", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["photos"] == [style_quality.split_photos("test")[3].stem]


def test_stratified_split_shares_out_every_collection(monkeypatch):
    # val (for choosing) and test (for reporting) split the held-out photos with each collection in
    # proportion, so neither side is one collection the way the name-ordered first 8 / 40 were
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import style_quality

    held = style_quality.holdout_photos(116)
    val, test = style_quality.split_photos("val"), style_quality.split_photos("test")
    assert len(val) == 40 and len(test) == 76
    assert set(val).isdisjoint(test) and sorted(val + test) == sorted(held)
    for name in {style_quality.collection(p) for p in held}:
        n = sum(style_quality.collection(p) == name for p in held)
        v = sum(style_quality.collection(p) == name for p in val)
        assert abs(v - n * 40 / 116) < 1, (name, v, n)
    # not the name order: the val photos are spread through the held-out list
    idx = [held.index(p) for p in val]
    assert min(idx) < 10 and max(idx) > 100
    # a photo keeps its side when the list changes (here: a collection's photos in another order)
    v2, _ = style_quality.stratified_split(list(reversed(held)))
    assert set(v2) == set(val)
    assert style_quality.split_photos("test", 3, 2) == test[2:5]
    with pytest.raises(SystemExit, match="does not fit"):
        style_quality.split_photos("val", 41)
