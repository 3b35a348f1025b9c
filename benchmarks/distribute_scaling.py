"""Scaling of GAN training with --strategy=multi_worker: 1 worker vs 2 workers on localhost.

    nice -n 15 python benchmarks/distribute_scaling.py            # 24 iterations per setting
    nice -n 15 python benchmarks/distribute_scaling.py --quick    # 6 iterations (a smoke test)

Each worker stands for one machine: it is pinned to its own core (taskset) with one TensorFlow
thread, so "2 workers" is two 1-core machines joined by gRPC over loopback, and "1 worker" one
such machine. Settings, run back to back in one invocation so their ratios see the same machine
load (this machine also runs other jobs):
  1w_b50    --strategy=default,      global batch 50 (the release's setting)
  2w_b50    --strategy=multi_worker, global batch 50 (25 per worker: strong scaling, the
            same training run as 1w_b50)
  2w_b100   --strategy=multi_worker, global batch 100 (50 per worker: weak scaling, a
            different run: twice the images per iteration)
The rate of a setting is the mean of the progress-line rates after the first window (which
holds tf.function tracing). The model t(N) = c / N + m (c: one worker's compute per
iteration; m: what does not shrink with N, i.e. the all-reduce and the lower efficiency of
smaller per-worker batches; fitted from 1w_b50 and 2w_b50) gives the expected time of the
paper's 200,000 iterations at N workers. The whitebox test set is split by batch with no
communication, so its time is the one-worker time / N (see README "Running on a cluster").

Writes benchmarks/results/distribute_scaling[_quick].json.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from defense_gan.files import write_json_atomic  # noqa: E402

MAIN = os.path.join(common.REPO, "main.py")
RATE = re.compile(r"\[train_gan\] step (\d+)/\d+ .*?  ([\d.]+) steps/s")
PAPER_ITERATIONS = 200_000
SETTINGS = (("1w_b50", 1, 50), ("2w_b50", 2, 50), ("2w_b100", 2, 100))


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_setting(name, workers, batch, iterations, log_every, folder):
    """Train `iterations` GAN iterations on `workers` pinned 1-core workers; the steps/s of
    worker 0's progress windows after the first, and the wall clock."""
    train_dir = os.path.join(folder, name)
    args = [sys.executable, MAIN, "--mode=train_gan", f"--train_dir={train_dir}",
            f"--batch_size={batch}", f"--iterations={iterations}", f"--log_every={log_every}",
            "--checkpoint_every=100000", "--image_every=100000",
            "--strategy=" + ("multi_worker" if workers > 1 else "default")]
    env = common.worker_env("1")
    env.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    env.pop("TF_CONFIG", None)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(workers)]}
    procs, start = [], time.time()
    try:
        for i in range(workers):
            if workers > 1:
                env = {**env, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                       "task": {"type": "worker", "index": i}})}
            procs.append(subprocess.Popen(
                ["taskset", "-c", str(i % os.cpu_count())] + args, env=env, cwd=common.REPO,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True))
        outputs = [p.communicate(timeout=7200) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
    wall = time.time() - start
    for p, (out, err) in zip(procs, outputs):
        if p.returncode:
            raise SystemExit(f"{name}: a worker failed ({p.returncode}):\n{out}\n{err[-2000:]}")
    rates = [(int(s), float(r)) for s, r in RATE.findall(outputs[0][0])]
    steady = [r for s, r in rates if s > log_every] or [r for _, r in rates]
    rate = sum(steady) / len(steady)
    return {"name": name, "workers": workers, "global_batch": batch,
            "iterations_per_second": round(rate, 4),
            "images_per_second": round(rate * batch * 5, 2),  # 5 critic batches per iteration
            "window_rates": rates, "wall_seconds": round(wall, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 iterations per setting")
    parser.add_argument("--iterations", type=int, default=24)
    parser.add_argument("--log_every", type=int, default=8)
    parser.add_argument("--out", default=None)
    ns = parser.parse_args()
    iterations, log_every = (6, 2) if ns.quick else (ns.iterations, ns.log_every)
    out = ns.out or os.path.join(common.RESULTS_DIR, "distribute_scaling"
                                 + ("_quick" if ns.quick else "") + ".json")
    folder = tempfile.mkdtemp(prefix="distribute_scaling-")
    results = {"machine": common.machine(), "iterations": iterations, "log_every": log_every,
               "threads_per_worker": 1, "settings": []}
    try:
        for name, workers, batch in SETTINGS:
            print(f"[bench] {name}: {workers} worker(s), global batch {batch}, {iterations} "
                  "iterations", flush=True)
            try:
                res = run_setting(name, workers, batch, iterations, log_every, folder)
            except SystemExit as err:  # keep the settings measured so far
                results["settings"].append({"name": name, "error": str(err)[-3000:]})
                print(f"[bench]   failed: {str(err).splitlines()[0]}", flush=True)
                continue
            results["settings"].append(res)
            print(f"[bench]   {res['iterations_per_second']:.3f} iterations/s, "
                  f"{res['images_per_second']:.1f} images/s ({res['wall_seconds']} s)",
                  flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    by = {r["name"]: r for r in results["settings"] if "error" not in r}
    if "1w_b50" not in by or "2w_b50" not in by:
        write_json_atomic(out, results)
        raise SystemExit(f"[bench] a batch-50 setting failed; wrote {out}")
    t1 = 1 / by["1w_b50"]["iterations_per_second"]
    t2 = 1 / by["2w_b50"]["iterations_per_second"]
    comm = max(t2 - t1 / 2, 0.0)
    results["ratios"] = {
        "strong_speedup_2w_b50_over_1w_b50": round(t1 / t2, 3),
        "weak_images_per_second_2w_b100_over_1w_b50": round(
            by["2w_b100"]["images_per_second"] / by["1w_b50"]["images_per_second"], 3)
        if "2w_b100" in by else None}
    results["model"] = {
        "seconds_per_iteration_1_worker": round(t1, 3), "allreduce_seconds": round(comm, 3),
        "paper_200k_iterations_hours": {
            n: round(PAPER_ITERATIONS * (t1 / n + (comm if n > 1 else 0)) / 3600, 1)
            for n in (1, 2, 5, 10, 25)},  # N divides the global batch 50
        "load_average_at_end": list(os.getloadavg())}
    write_json_atomic(out, results)
    print(f"[bench] strong scaling 2 workers / 1 worker (batch 50): "
          f"{results['ratios']['strong_speedup_2w_b50_over_1w_b50']}x; weak (batch 100 vs 50, "
          f"images/s): {results['ratios']['weak_images_per_second_2w_b100_over_1w_b50']}; "
          f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
