"""What the recipe runners share: their command line, logging, threads and reading the recipe."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "src_models" / "weights"


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("recipe", type=Path)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--vgg", type=Path, default=ROOT.parent / "shared" / "weights" / "vgg16_caffe_features.pth")
    p.add_argument("--out", type=Path, help="output .safetensors (default: the recipe's, in src_models/weights)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--threads", type=int)
    return p


def setup(a: argparse.Namespace) -> tuple[dict, Path]:
    """Logging and threads; returns the recipe and the output path."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if not a.recipe.is_file():
        print(f"error: no such recipe: {a.recipe}", file=sys.stderr)
        raise SystemExit(2)
    r = json.loads(a.recipe.read_text())
    return r, a.out or (WEIGHTS / r["output"])
