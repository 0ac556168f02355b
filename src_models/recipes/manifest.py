"""Rewrite ``src_models/weights/MANIFEST.json``: sha256, size and provenance of every bundled model.

    python -m src_models.recipes.manifest
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from ._common import WEIGHTS


def main() -> int:
    models = {}
    for p in sorted(WEIGHTS.glob("*.safetensors")):
        header_len = int.from_bytes(p.read_bytes()[:8], "little")
        meta = json.loads(json.loads(p.read_bytes()[8:8 + header_len])["__metadata__"]["napari_fast_style"])
        recipe = Path(__file__).parent / f"{p.stem}.json"
        runner = "train_sr" if meta["kind"] == "sr" else "train"
        models[p.name] = {
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "bytes": p.stat().st_size,
            "kind": meta["kind"], "arch": meta["arch"], "styles": meta.get("styles", []),
            "provenance": ("trained by the napari-fast-style developers with "
                           f"`python -m src_models.recipes.{runner} src_models/recipes/{recipe.name}`; "
                           + ("" if meta.get("variant") == "fidelity" else
                              "loss network: Oxford VGG16 (Caffe conversion, CC BY 4.0); ")
                           + "training images: research photographs (not redistributed)"
                           + ("; style: a public-domain painting (see the recipe)" if meta["kind"] == "style"
                              else "")),
            "steps": meta.get("recipe", {}).get("steps"),
            "seconds": meta.get("recipe", {}).get("seconds"),
        }
    (WEIGHTS / "MANIFEST.json").write_text(json.dumps({"models": models}, indent=1) + "\n")
    print(f"{len(models)} models listed in {WEIGHTS / 'MANIFEST.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
