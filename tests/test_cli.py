"""The command line as a user runs it: real files, real exit codes."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_fast_style.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "napari_fast_style.cli", *map(str, args)],
                          capture_output=True, text=True)


def test_stylize_sample_with_bundled_default(tmp_path):
    out = tmp_path / "stylized.png"
    r = run("stylize", "--sample", "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["output"] == str(out) and rep["shape"] == [512, 512, 3]
    im = np.asarray(Image.open(out))
    assert im.shape == (512, 512, 3) and im.std() > 10


def test_stylize_files_and_options(tmp_path, random_model, capsys):
    a = tmp_path / "a.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(a)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, (np.random.default_rng(1).random((3, 40, 50)) * 4000).astype(np.uint16))
    outdir = tmp_path / "out"
    code = main(["stylize", str(a), str(stack), "-m", str(random_model()), "-o", str(outdir), "--strength", "0.5",
                 "--preserve-color", "--tile", "32", "--device", "cpu", "--json"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert len(rep) == 2
    assert np.asarray(Image.open(rep[0]["output"])).shape == (40, 50, 3)
    assert rep[1]["output"].endswith(".tif")
    assert tifffile.imread(rep[1]["output"]).shape == (3, 40, 50, 3)


@pytest.mark.parametrize("args,msg", [
    (["stylize", "missing.png", "-o", "x.png"], "no such file"),
    (["stylize", "--sample", "-o", "x.png", "-m", "no-such-model"], "unknown style model"),
    (["stylize", "--sample", "-o", "x.png", "--strength", "3"], "strength"),
    (["stylize", "--sample"], "-o"),
    (["stylize", "-o", "x.png"], "input"),
    (["stylize", "--sample", "-o", "x.png", "--device", "gpu"], "invalid choice"),
    (["models", "info", "no-such-model"], "unknown model"),
    (["models", "import", "missing.pth"], "not found"),
    (["frobnicate"], "invalid choice"),
])
def test_errors_exit_2_with_one_clear_line(args, msg, tmp_path):
    r = subprocess.run([sys.executable, "-m", "napari_fast_style.cli", *args], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert msg in lines[-1]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_closed_pipe_is_not_reported_as_bad_input():
    # `napari-fast-style models info X | head -1`: the reader closes the pipe before the CLI writes.
    p = subprocess.Popen([sys.executable, "-m", "napari_fast_style.cli", "models", "info", "starry_night-fast"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 141
    assert "error" not in err and "Traceback" not in err and "Exception" not in err, err


def test_unreadable_image_exit_2_and_nothing_written(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "o.png"
    r = run("stylize", bad, "-o", out)
    assert r.returncode == 2 and "cannot read image" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_models_list_import_info(tmp_path, capsys):
    import torch

    from .test_models import pytorch_examples_state_dict

    _, state = pytorch_examples_state_dict()
    ck = tmp_path / "candy.pth"
    torch.save(state, ck)
    assert main(["models", "import", str(ck), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "candy"
    assert main(["models", "list", "--json"]) == 0
    names = [m["name"] for m in json.loads(capsys.readouterr().out)]
    assert "candy" in names and any(n.endswith("-fast") for n in names)
    assert main(["models", "info", "candy"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["arch"] == "classic" and info["metadata"]["recipe"]["imported_from"] == "candy.pth"
