"""Shared plumbing of the benchmarks: one subprocess per setting, timing, matmul peak.

Settings that TensorFlow reads once at import (TF_ENABLE_ONEDNN_OPTS) or at its first op
(thread pools) cannot change inside a process, so a benchmark spawns itself once per setting
(`--worker SPEC_JSON`), each worker prints one `RESULT {json}` line, and the parent collects
them into one JSON file. TensorFlow is imported only in workers.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
RESULT_TAG = "RESULT "


# --- parent side -------------------------------------------------------------------------------

def worker_env(onednn: str | None) -> dict:
    """The environment of a worker: TF_ENABLE_ONEDNN_OPTS set to `onednn`, or removed (TF's
    own default) when None."""
    env = dict(os.environ)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if onednn is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_worker(script: str, spec: dict, timeout: float = 3600) -> dict:
    """Run `python script --worker SPEC` in its own process; its RESULT dict (or an error)."""
    start = time.time()
    proc = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)],
                          env=worker_env(spec.get("onednn")), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
            result["process_seconds"] = round(time.time() - start, 1)
            return result
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    return {"name": spec["name"], "spec": spec, "error": f"exit {proc.returncode}: {tail}"}


def run_workers(script: str, workers: list, header, report) -> list:
    """Run each worker spec in turn (`run_worker`), printing `[bench] worker <name><header(spec)>`
    before it, a failure line if it failed, else `report(spec, result)`. Returns every result
    (failed ones carry "error")."""
    results = []
    for spec in workers:
        print(f"[bench] worker {spec['name']}{header(spec)}", flush=True)
        res = run_worker(script, spec)
        results.append(res)
        if "error" in res:
            print(f"[bench]   failed: {res['error']}", flush=True)
        else:
            report(spec, res)
    return results


def machine() -> dict:
    """What the parent knows without importing TensorFlow."""
    from defense_gan import hardware
    from defense_gan.checkpoints import cpu_name
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "bf16_cpu_flags": hardware.bf16_cpu_flags(),
            "avx512f": "avx512f" in hardware.cpu_flags(),
            "amx": bool({"amx_tile", "amx_bf16"} & hardware.cpu_flags()),
            "python": platform.python_version(),
            "load_average_at_start": list(os.getloadavg())}


def versions() -> dict:
    """TensorFlow and Keras versions (imported here only; call from the parent at the end)."""
    out = subprocess.run([sys.executable, "-c", "import tensorflow as tf, keras; "
                          "print(tf.__version__, keras.__version__)"],
                         env=worker_env(None), capture_output=True, text=True)
    parts = out.stdout.split()
    return {"tensorflow": parts[0] if parts else None, "keras": parts[1] if parts else None}


def write(path: str, obj: dict) -> None:
    from defense_gan.files import write_json_atomic
    write_json_atomic(path, obj)


# --- worker side -------------------------------------------------------------------------------

def set_threads(spec: dict) -> None:
    """Apply the spec's thread counts (must run before TensorFlow's first op)."""
    import tensorflow as tf
    if spec.get("intra_op"):
        tf.config.threading.set_intra_op_parallelism_threads(spec["intra_op"])
    if spec.get("inter_op"):
        tf.config.threading.set_inter_op_parallelism_threads(spec["inter_op"])


def timed(fn, reps: int) -> list:
    """Wall-clock seconds of `reps` calls of fn() (fn must block until its result is ready)."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def matmul_gflops(dtype_name: str, n: int, reps: int) -> float:
    """Best GFLOP/s of an n x n x n matmul in `dtype_name` (float32 or bfloat16), the
    machine's dense-arithmetic peak as TensorFlow reaches it under the current settings."""
    import tensorflow as tf
    dtype = tf.as_dtype(dtype_name)
    a = tf.cast(tf.random.stateless_normal([n, n], seed=[1, 2]), dtype)
    b = tf.cast(tf.random.stateless_normal([n, n], seed=[3, 4]), dtype)
    mm = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), tf.float32)))
    mm(a, b).numpy()
    best = min(timed(lambda: mm(a, b).numpy(), reps))
    return 2.0 * n ** 3 / best / 1e9


def parse_or_work(parser, worker, name: str):
    """Add the shared --out / --worker options and parse. In a worker process (--worker SPEC)
    run `worker(spec)`, print its RESULT line and return None; else return the parsed args."""
    parser.add_argument("--out", default=None,
                        help=f"JSON output (default benchmarks/results/{name}[_quick].json)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        report(worker(json.loads(args.worker)))
        return None
    return args


def report(result: dict) -> None:
    print(RESULT_TAG + json.dumps(result), flush=True)
