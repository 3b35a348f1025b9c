"""Reconstruction time per image (the paper's Table 13), for L in 10..200 and R in 1..20.

    python benchmarks/reconstruction_time.py                 # full grid, batch 50, 2 repeats
    python benchmarks/reconstruction_time.py --quick         # L 10, 25, 50 and R 1, 2, 5, 10
    nice -n 15 python benchmarks/reconstruction_time.py --repeats 1   # on a busy machine

One worker process (fresh TensorFlow, TF_ENABLE_ONEDNN_OPTS=1 as main.py sets it) builds the
shipped generator (checkpoints/mnist/gan) in each precision and, for every (L, R) cell, times
`projection.Projector` on one batch of --batch MNIST test images (the release's batch is 50):
first a call that traces the graph (not timed), then --repeats timed calls. The time per image
is the batch's wall clock divided by --batch. Two settings:
  fp32                   the faithful projection;
  bf16 + early stop      the fastest setting that keeps the accuracy (README, Performance:
                         --precision=bfloat16 --rec_prune_at=0.25 --rec_keep=2, within 0.1
                         points of fp32 on 1,000 images). The early stop needs R > --rec_keep,
                         so R = 1 and 2 are bf16 alone. Where the CPU has no bf16 arithmetic
                         (hardware.resolve_precision) the "bf16" cells are float32 + early stop.
Cells are timed one (L, R) at a time with the two settings in turn, so on a shared machine
both see the same load (each cell keeps the 1-minute load average it saw).
The paper's Table 13 gives "average time to compute reconstructions of MNIST/F-MNIST images"
on one GTX TITAN X and does not say whether per image or per 50-image batch: its value is
printed beside each cell as printed, and the JSON says so. The machine may be shared: the JSON
keeps the load average at start and end.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SCRIPT = os.path.abspath(__file__)
LS = (10, 25, 50, 100, 200)
RS = (1, 2, 5, 10, 20)
# Table 13 of the paper (seconds, mean +- std, one GTX TITAN X, per image or per batch: not
# stated), rows R, columns L.
PAPER = {
    1: {10: "0.043±0.027", 25: "0.070±0.003", 50: "0.137±0.004", 100: "0.273±0.006",
        200: "0.543±0.017"},
    2: {10: "0.042±0.026", 25: "0.067±0.002", 50: "0.131±0.003", 100: "0.261±0.006",
        200: "0.510±0.006"},
    5: {10: "0.043±0.029", 25: "0.070±0.002", 50: "0.136±0.004", 100: "0.270±0.004",
        200: "0.535±0.008"},
    10: {10: "0.051±0.032", 25: "0.086±0.001", 50: "0.170±0.002", 100: "0.338±0.008",
         200: "0.675±0.016"},
    20: {10: "0.060±0.035", 25: "0.105±0.003", 50: "0.209±0.006", 100: "0.414±0.012",
         200: "0.825±0.022"},
}
PAPER_NOTE = ("paper Table 13: 'average time to compute reconstructions of MNIST/F-MNIST images' "
              "on one GTX TITAN X; the paper does not say whether per image or per 50-image "
              "batch")
SETTINGS = {"fp32": {"precision": "float32", "prune_at": 0.0},
            "bf16_early_stop": {"precision": "bfloat16", "prune_at": 0.25, "keep": 2}}


def worker(spec: dict) -> dict:
    import numpy as np
    import tensorflow as tf

    from defense_gan import data, hardware, projection
    from projection import load_generator  # benchmarks/projection.py

    common.set_threads(spec)
    images = data.to_float(data.load("mnist").x_test[:spec["batch"]]).numpy()
    x = tf.constant(np.asarray(images, np.float32))
    out = {"name": spec["name"], "cells": [], "generator": None}
    generators, precisions = {}, {}
    for setting in spec["settings"]:
        precisions[setting] = hardware.resolve_precision(SETTINGS[setting]["precision"])
        generators[setting], out["generator"] = load_generator(precisions[setting],
                                                               spec["gan_dir"])
    # Cell by cell, the settings in turn, so both see the same load on a shared machine.
    for rr in spec["R"]:
        for iters in spec["L"]:
            for setting in spec["settings"]:
                s = SETTINGS[setting]
                prune = s["prune_at"] if rr > s.get("keep", rr) else 0.0
                settings = projection.ProjectionSettings(
                    iters, rr, batch_size=spec["batch"], rec_prune_at=prune,
                    rec_keep=s.get("keep", 2) if prune else 2)
                projector = projection.Projector(generators[setting], (28, 28, 1), 128, settings)
                projector(x, [0, 0])[2].numpy()  # trace (and one untimed run)
                times = common.timed(lambda: projector(x, [0, 1])[2].numpy(), spec["repeats"])
                per_image = [t / spec["batch"] for t in times]
                cell = {"setting": setting, "precision": precisions[setting], "L": iters,
                        "R": rr, "rec_prune_at": prune,
                        "rec_keep": settings.rec_keep if prune else None,
                        "seconds_per_batch": times,
                        "seconds_per_image": float(np.mean(per_image)),
                        "seconds_per_image_std": float(np.std(per_image)),
                        "load_average": os.getloadavg()[0], "paper_titan_x": PAPER[rr][iters]}
                out["cells"].append(cell)
                print(f"[bench]   {setting} L={iters} R={rr}: {cell['seconds_per_image']:.4f} "
                      f"s/image (paper {PAPER[rr][iters]})", flush=True)
    out["timing_unit"] = f"seconds per image = wall clock of one {spec['batch']}-image batch / " \
                         f"{spec['batch']}"
    return out


def table(cells: list, setting: str, ls, rs) -> str:
    """Markdown: rows R, columns L, 'ours s/image (paper)' per cell."""
    get = {(c["L"], c["R"]): c for c in cells if c["setting"] == setting}
    lines = ["| R \\ L | " + " | ".join(str(v) for v in ls) + " |",
             "|---|" + "---|" * len(ls)]
    for rr in rs:
        row = []
        for iters in ls:
            c = get.get((iters, rr))
            row.append("-" if c is None else
                       f"{c['seconds_per_image']:.3f}±{c['seconds_per_image_std']:.3f} "
                       f"({PAPER[rr][iters]})")
        lines.append(f"| {rr} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="L 10, 25, 50 and R 1, 2, 5, 10 only")
    parser.add_argument("--L", default=None, help="comma-separated L values (default all)")
    parser.add_argument("--R", default=None, help="comma-separated R values (default all)")
    parser.add_argument("--batch", type=int, default=50, help="images per projection call")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per cell")
    parser.add_argument("--settings", default="fp32,bf16_early_stop")
    parser.add_argument("--gan_dir", default=os.path.join(common.REPO, "checkpoints", "mnist",
                                                          "gan"))
    args = common.parse_or_work(parser, worker, "reconstruction_time")
    if args is None:
        return
    ls = [int(v) for v in args.L.split(",")] if args.L else list(LS[:3] if args.quick else LS)
    rs = [int(v) for v in args.R.split(",")] if args.R else list(RS[:4] if args.quick else RS)
    bad = [v for v in ls if v not in LS] + [v for v in rs if v not in RS]
    if bad or args.batch < 1 or args.repeats < 1:
        parser.error(f"L must be in {LS}, R in {RS}, --batch and --repeats >= 1 (got {bad})")
    settings = args.settings.split(",")
    if not settings or any(s not in SETTINGS for s in settings):
        parser.error(f"--settings: each of {', '.join(SETTINGS)}")
    reduced = ls != list(LS) or rs != list(RS)
    out_path = args.out or os.path.join(common.RESULTS_DIR, "reconstruction_time" + (
        "_quick" if reduced else "") + ".json")
    start = time.time()
    mach = common.machine()
    print(f"[bench] reconstruction time on {mach['cpu']} ({mach['cpu_count']} CPUs, load "
          f"{mach['load_average_at_start'][0]:.1f}); {PAPER_NOTE}", flush=True)
    spec = {"name": "reconstruction_time", "L": ls, "R": rs, "batch": args.batch,
            "repeats": args.repeats, "settings": settings, "gan_dir": args.gan_dir,
            "onednn": "1"}
    [res] = common.run_workers(SCRIPT, [spec], lambda s: "", lambda s, r: None)
    result = {"machine": mach, "versions": common.versions(), "spec": spec,
              "paper_note": PAPER_NOTE, "load_average_at_end": list(os.getloadavg()),
              "wall_seconds": round(time.time() - start, 1),
              "command": "python benchmarks/reconstruction_time.py " + " ".join(sys.argv[1:]),
              "shared_machine_note": "the load averages include this benchmark's own threads "
                                     "(about the number of CPUs on an otherwise idle "
                                     "machine); more means other jobs shared the CPU",
              **res}
    common.write(out_path, result)
    if "error" in res:
        print(f"[bench] failed: {res['error']}", flush=True)
        sys.exit(1)
    for setting in settings:
        print(f"\n[bench] {setting}: seconds per image on {mach['cpu']} (paper's TITAN X value "
              "in parentheses; per image or per batch: not stated)\n"
              + table(res["cells"], setting, ls, rs), flush=True)
    print(f"[bench] wrote {out_path}", flush=True)


if __name__ == "__main__":
    main()
