"""The recipe runner (``python -m src_models.recipes.train``): start files pinned by sha256 resolve to the
version the recipe was trained from, from git history when the file has changed since; a start file that
matches no version stops the run with exit code 2 before anything is trained. A stage's ``interpolate``
blends it with an earlier stage, and that blend is what the next stage starts from; ``start_from_stage``
trains a stage from an earlier stage's output, and ``average`` makes a soup of several."""
from __future__ import annotations

import hashlib
import json
import logging
import subprocess

import pytest
import torch

from src_models.recipes._common import WEIGHTS
from src_models.recipes.train import main as train_recipe
from src_models.recipes.train import start_file

from .conftest import SHARED, random_style_net

RECIPES = sorted((WEIGHTS.parent / "recipes").glob("*.json"))


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def weights_repo(tmp_path):
    """A git repository holding base.safetensors in two versions (v1 committed, then v2 committed)."""
    from napari_fast_style.engine import save_model

    repo = tmp_path / "weights"
    repo.mkdir()
    git(repo, "init", "-q")
    versions = []
    for seed in (1, 2):
        p = save_model(random_style_net("fast", seed=seed), repo / "base.safetensors", kind="style", arch="fast",
                       display_name=f"v{seed}", styles=("s",), half=False)
        git(repo, "add", "base.safetensors")
        git(repo, "commit", "-q", "-m", f"v{seed}")
        versions.append((sha(p), git(repo, "rev-parse", "HEAD")))
    return repo, versions


def tiny_recipe(tmp_path, **extra) -> str:
    r = {"style": "starry_night.jpg", "name": "tiny", "output": "tiny.safetensors", "content_limit": 2, **extra,
         "config": {"arch": "fast", "size": 32, "batch_size": 1, "style_size": 64, "content_size": 64},
         "loop": {"steps": 1, "lr": 1e-3, "checkpoint_every": 0, "preview_every": 0}}
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(r))
    return str(p)


def run(tmp_path, recipe, weights, vgg_path):
    return train_recipe([recipe, "--data", str(SHARED / "data"), "--vgg", str(vgg_path), "--out",
                         str(tmp_path / "out" / "tiny.safetensors"), "--weights", str(weights)])


def test_changed_start_file_is_taken_from_git_history(tmp_path, weights_repo, vgg_path, caplog):
    repo, [(v1, c1), (v2, _)] = weights_repo
    assert sha(repo / "base.safetensors") == v2
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    old = start_file(repo, "base.safetensors", v1, scratch)
    assert old == scratch / "base.safetensors" and sha(old) == v1
    assert start_file(repo, "base.safetensors", v2, scratch) == repo / "base.safetensors"
    assert start_file(repo, "base.safetensors", None, scratch) == repo / "base.safetensors"
    # end to end: the runner trains from v1 and says so
    (tmp_path / "out").mkdir()
    recipe = tiny_recipe(tmp_path, init_from="base.safetensors", start_sha256={"base.safetensors": v1})
    with caplog.at_level(logging.INFO):
        assert run(tmp_path, recipe, repo, vgg_path) == 0
    assert f"using its version of commit {c1[:10]}" in caplog.text
    assert (tmp_path / "out" / "tiny.safetensors").is_file()
    assert sha(repo / "base.safetensors") == v2  # the checkout is left as it was


@pytest.mark.parametrize("case", ["no version matches", "missing"])
def test_unresolvable_start_file_exits_2_before_training(tmp_path, weights_repo, vgg_path, capsys, case):
    repo, _ = weights_repo
    name = "base.safetensors" if case == "no version matches" else "absent.safetensors"
    pin = {name: "0" * 64} if case == "no version matches" else {}
    (tmp_path / "out").mkdir()
    recipe = tiny_recipe(tmp_path, init_from=name, start_sha256=pin)
    assert run(tmp_path, recipe, repo, vgg_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and name in err
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("recipe", [p for p in RECIPES if {"init_from", "merge_from"} & json.loads(p.read_text()).keys()],
                         ids=lambda p: p.stem)
def test_bundled_recipes_pin_their_start_files(recipe, tmp_path):
    """Every bundled recipe that starts from another bundled model pins it, and the pinned version exists
    (in the tree or in git history), so the recipe retrains from what it was trained from."""
    r = json.loads(recipe.read_text())
    files = ([r["init_from"]] if r.get("init_from") else []) + r.get("merge_from", [])
    assert sorted(r.get("start_sha256", {})) == sorted(files)
    for f in files:
        if sha(WEIGHTS / f) != r["start_sha256"][f] and not full_history():
            pytest.skip(f"{f} changed since {recipe.name} was trained; its pinned version needs the git history")
        assert sha(start_file(WEIGHTS, f, r["start_sha256"][f], tmp_path)) == r["start_sha256"][f]


def full_history() -> bool:
    try:
        return git(WEIGHTS, "rev-parse", "--is-shallow-repository") == "false"
    except (OSError, subprocess.CalledProcessError):
        return False


def test_missing_recipe_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_recipe([str(tmp_path / "nope.json")])
    assert e.value.code == 2 and "no such recipe" in capsys.readouterr().err


def staged_recipe(tmp_path, n: int, **extra) -> str:
    stage = {"config": {"arch": "fast", "size": 32, "batch_size": 1, "style_size": 64, "content_size": 64},
             "loop": {"steps": 1, "lr": 1e-2, "checkpoint_every": 0, "preview_every": 0}}
    stages = [json.loads(json.dumps(stage)) for _ in range(n)]
    for i, s in enumerate(stages):
        s["loop"]["seed"] = i
        s.update(extra.pop(f"stage{i}", {}))
    p = tmp_path / "staged.json"
    p.write_text(json.dumps({"style": "starry_night.jpg", "name": "tiny", "output": "tiny.safetensors",
                             "content_limit": 2, "stages": stages, **extra}))
    return str(p)


def state(path):
    from napari_fast_style.engine import load_model

    return {k: v.float() for k, v in load_model(path)[0].state_dict().items()}


def test_stage_interpolation_is_the_next_stage_start(tmp_path, vgg_path):
    """A stage's ``interpolate`` blends it with an earlier stage in weight space; the blend is that stage's
    output and the start of the next stage (so a recipe can go on training after an interpolation)."""
    out = tmp_path / "out"
    recipe = staged_recipe(tmp_path, 3, stage1={"interpolate": {"from_stage": 0, "alpha": 0.25}})
    assert run(tmp_path, recipe, tmp_path, vgg_path) == 0
    s0, trained, s1 = (state(out / f"tiny.stage{k}.safetensors") for k in ("0", "1.trained", "1"))
    moved = 0
    for k in s1:
        expected = 0.75 * s0[k] + 0.25 * trained[k]
        assert torch.allclose(s1[k], expected, rtol=2e-3, atol=2e-3), k
        moved += bool((s0[k] - trained[k]).abs().max() > 1e-2)
    assert moved > 0  # stage 1 trained away from stage 0, so the blend is not either of them
    # stage 2 started from the blend: running stage 2 alone from it gives the same file
    again = tmp_path / "again"
    again.mkdir()
    for k in (0, 1):
        (again / f"tiny.stage{k}.safetensors").write_bytes((out / f"tiny.stage{k}.safetensors").read_bytes())
    assert train_recipe([recipe, "--data", str(SHARED / "data"), "--vgg", str(vgg_path), "--out",
                         str(again / "tiny.safetensors"), "--start-stage", "2"]) == 0
    a, b = state(out / "tiny.safetensors"), state(again / "tiny.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_top_level_interpolation_blends_the_last_stage(tmp_path, vgg_path):
    out = tmp_path / "out"
    recipe = staged_recipe(tmp_path, 2, interpolate={"from_stage": 0, "alpha": 0.5})
    assert run(tmp_path, recipe, tmp_path, vgg_path) == 0
    s0, trained, final = (state(out / f"tiny{k}.safetensors") for k in (".stage0", ".stage1.trained", ""))
    assert all(torch.allclose(final[k], 0.5 * s0[k] + 0.5 * trained[k], rtol=2e-3, atol=2e-3) for k in final)


def test_sibling_stages_and_their_average(tmp_path, vgg_path):
    """Stages 1 and 2 both start from stage 0 (``start_from_stage``); stage 2's ``average`` is
    0.2 * stage 0 + 0.4 * stage 1 + 0.4 * stage 2 as trained."""
    out = tmp_path / "out"
    recipe = staged_recipe(tmp_path, 3, stage1={"start_from_stage": 0},
                           stage2={"start_from_stage": 0, "average": [[0, 0.2], [1, 0.4]]})
    assert run(tmp_path, recipe, tmp_path, vgg_path) == 0
    s0, s1, t2, final = (state(out / f"tiny{k}.safetensors") for k in (".stage0", ".stage1", ".stage2.trained", ""))
    assert any((s1[k] - t2[k]).abs().max() > 1e-2 for k in s1)  # two different siblings (seeds 1 and 2)
    for k in final:
        assert torch.allclose(final[k], 0.2 * s0[k] + 0.4 * s1[k] + 0.4 * t2[k], rtol=2e-3, atol=2e-3), k
    # stage 2 started from stage 0, not from stage 1: with another stage-1 file it trains to the same weights
    again = tmp_path / "again"
    again.mkdir()
    (again / "tiny.stage0.safetensors").write_bytes((out / "tiny.stage0.safetensors").read_bytes())
    (again / "tiny.stage1.safetensors").write_bytes((out / "tiny.stage2.trained.safetensors").read_bytes())
    assert train_recipe([recipe, "--data", str(SHARED / "data"), "--vgg", str(vgg_path), "--out",
                         str(again / "tiny.safetensors"), "--start-stage", "2"]) == 0
    a, b = state(out / "tiny.stage2.trained.safetensors"), state(again / "tiny.stage2.trained.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("stage1", [{"start_from_stage": 1}, {"average": [[0, 1.0]]}, {"average": [[0, 0.5], [0, 0.5]]},
                                    {"average": [[1, 0.5]]}, {"average": [[0, 0.5]], "interpolate": {"from_stage": 0, "alpha": 0.5}}])
def test_bad_sibling_or_average_exits_2(tmp_path, vgg_path, capsys, stage1):
    recipe = staged_recipe(tmp_path, 2, stage1=stage1)
    assert run(tmp_path, recipe, tmp_path, vgg_path) == 2
    assert "stage 1:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("from_stage", [1, 2, -1])
def test_interpolation_from_a_later_stage_exits_2(tmp_path, vgg_path, capsys, from_stage):
    recipe = staged_recipe(tmp_path, 2, stage1={"interpolate": {"from_stage": from_stage, "alpha": 0.5}})
    assert run(tmp_path, recipe, tmp_path, vgg_path) == 2
    assert "from_stage must name an earlier stage" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
