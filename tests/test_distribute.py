"""--strategy and sharded evaluation (defense_gan/distribute.py) on this machine: TF_CONFIG
validation, two logical CPUs (`mirrored`), two worker processes on 127.0.0.1 (`multi_worker`),
checkpoints moving between one device and a cluster, a worker lost mid-run, and a whitebox run
sharded over two processes. Everything uses flags/smoke.cfg.

Tolerance: a distributed step sums the replicas' gradients of half-batch losses where one
device reduces the whole batch at once; float32 addition is not associative, so weights differ
by float rounding: 2.4e-7 at most after the smoke run on a Zen 5. On an AVX2 Zen 1 oneDNN's
reduction order differs more, and a LeakyReLU input whose sign flips by rounding switches a
unit's slope (1 vs 0.2) while Adam normalises every update to about +-lr: up to 6% of a
weight's elements moved by more than 1e-5 (at most 6e-5) after 8 steps, and 2 of 256 elements
of one Adam moment by 8%. So each weight must agree on average to WEIGHT_ATOL (a tenth of one
Adam step, lr 1e-4) and everywhere to STRAY_ATOL (a few steps), and each Adam moment in total
to MOMENT_RTOL (5%) of its summed magnitude (1.1% seen there); half the data or a lost
replica's gradients would move most weights by about lr and the moments by tens of percent.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import (MAIN, REPO, SMOKE_CLASSIFIER_MODEL, SMOKE_FLAGFILE, SMOKE_ITERATIONS,
                      error_line, run_main, smoke_args, tree_digest)
from defense_gan import config, distribute, gan
from defense_gan.errors import ConfigError

WEIGHT_ATOL = 1e-5
STRAY_ATOL = 1e-3
MOMENT_RTOL = 0.05
LOSS_LINE = re.compile(r"\[train_gan\] step (\d+)/\d+  (.*?)  [\d.]+ steps/s")
PROCESS_TIMEOUT = 600  # seconds; this machine is shared, a smoke worker takes 10 s idle


# --- helpers -------------------------------------------------------------------------------------

def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_configs(n):
    """TF_CONFIG of each of n workers on 127.0.0.1 (free ports picked now); worker 0 is chief."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(n)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            for i in range(n)]


class Cluster:
    """n `main.py` processes, one per TF_CONFIG, each in its own process group; `stop()`
    kills every group still alive (use in `finally`)."""

    def __init__(self, folder, configs, *args):
        self.procs, self.logs = [], []
        for i, tf_config in enumerate(configs):
            out, err = (open(os.path.join(folder, f"worker{i}.{x}"), "w+") for x in ("out", "err"))
            env = {**os.environ, "TF_CONFIG": tf_config}
            self.procs.append(subprocess.Popen(
                [sys.executable, MAIN, *map(str, args)], cwd=REPO, env=env, stdout=out,
                stderr=err, text=True, start_new_session=True))
            self.logs += [out, err]

    def wait(self, timeout=PROCESS_TIMEOUT):
        """[(returncode, stdout, stderr)] of every process, in order."""
        deadline = time.time() + timeout
        for p in self.procs:
            p.wait(timeout=max(1.0, deadline - time.time()))
        return [(p.returncode, self.output(i), self.output(i, err=True))
                for i, p in enumerate(self.procs)]

    def output(self, i, err=False):
        log = self.logs[2 * i + int(err)]
        log.flush()
        log.seek(0)
        return log.read()

    def kill(self, i):
        try:
            os.killpg(self.procs[i].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.procs[i].wait()

    def stop(self):
        for i in range(len(self.procs)):
            self.kill(i)
        for log in self.logs:
            log.close()


def run_cluster(folder, n, *args):
    cluster = Cluster(folder, tf_configs(n), *args)
    try:
        results = cluster.wait()
    finally:
        cluster.stop()
    for i, (rc, out, err) in enumerate(results):
        assert rc == 0, f"worker {i} failed ({rc}):\n{out}\n{err}"
    return [out for _, out, _ in results]


def losses(stdout):
    """{step: {metric: value}} from the progress lines."""
    found = {}
    for m in LOSS_LINE.finditer(stdout):
        pairs = m.group(2).split("  ")
        found[int(m.group(1))] = {k: float(v) for k, v in (p.split(" ") for p in pairs)}
    return found


def assert_same_losses(a, b):
    la, lb = losses(a), losses(b)
    assert la and la.keys() == lb.keys()
    for step in la:
        for k in la[step]:
            assert la[step][k] == pytest.approx(lb[step][k], abs=2e-4), (step, k)  # 4 decimals


def checkpoint_values(train_dir):
    prefix = tf.train.latest_checkpoint(os.path.join(train_dir, "ckpt"))
    reader = tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if "wall_clock" not in k and "_CHECKPOINTABLE_OBJECT_GRAPH" not in k}


def assert_same_training_state(dir_a, dir_b):
    a, b = checkpoint_values(dir_a), checkpoint_values(dir_b)
    assert a.keys() == b.keys()
    assert sum("kernel" in k for k in a) >= 3  # model weights, not just counters
    for k in a:
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        assert x.shape == y.shape, k
        diff = np.abs(x - y)
        if "optimizer/_variables/" in k:  # Adam's moments: see the module docstring
            assert diff.sum() <= MOMENT_RTOL * np.abs(x).sum() + 1e-12, (k, diff.sum())
            continue
        assert diff.mean() <= WEIGHT_ATOL, (k, diff.mean())
        np.testing.assert_allclose(x, y, rtol=0, atol=STRAY_ATOL, err_msg=k)


# --- TF_CONFIG and flag validation (in process) -------------------------------------------------

GOOD = {"cluster": {"chief": ["h0:2222"], "worker": ["h1:2222", "h2:2222"]},
        "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize("text,names", [
    ("{not json", "not valid JSON"),
    ('["a"]', '"cluster" and "task"'),
    (json.dumps({"cluster": {"worker": ["h:1"]}}), '"cluster" and "task"'),
    (json.dumps({**GOOD, "task": {"type": "worker", "index": 2}}), '"index" 2'),
    (json.dumps({**GOOD, "task": {"type": "ps", "index": 0}}), '"type" \'ps\''),
    (json.dumps({**GOOD, "cluster": {"worker": ["h1"]}}), "host:port"),
    (json.dumps({**GOOD, "cluster": {"worker": ["h1:99999"]}}), "host:port"),
    (json.dumps({**GOOD, "cluster": {"worker": ["h:1", "h:1"]}}), "twice"),
    (json.dumps({**GOOD, "cluster": {"worker": ["h:1"], "ps": ["h:2"]}}), "ps"),
    (json.dumps({**GOOD, "cluster": {"worker": []}}), "non-empty"),
])
def test_malformed_tf_config_is_a_one_line_config_error_naming_tf_config(text, names):
    with pytest.raises(ConfigError) as err:
        distribute.parse_tf_config(text)
    assert str(err.value).startswith("TF_CONFIG: ") and names in str(err.value)
    assert "\n" not in str(err.value)


def test_task_shard_counts_the_chief_first_then_the_workers():
    assert distribute.task_shard(GOOD) == (2, 3)
    chief = {**GOOD, "task": {"type": "chief", "index": 0}}
    assert distribute.task_shard(distribute.parse_tf_config(json.dumps(chief))) == (0, 3)
    no_chief = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
    assert distribute.task_shard(no_chief) == (1, 2)


@pytest.mark.parametrize("fields,flag", [
    ({"cpu_devices": 2}, "--cpu_devices"),  # with --strategy=default
    ({"num_shards": 2, "shard_index": 2, "mode": "whitebox"}, "--shard_index"),
    ({"num_shards": 2, "mode": "train_gan"}, "--num_shards"),
    ({"num_shards": 2, "mode": "whitebox", "strategy": "multi_worker"}, "--num_shards"),
])
def test_inconsistent_distribution_flags_are_refused_naming_the_flag(fields, flag):
    with pytest.raises(ConfigError, match=f"^{flag}: "):
        config.validate(config.Config(**fields))


def test_evaluation_refuses_a_one_process_multi_device_strategy_naming_it():
    with pytest.raises(ConfigError, match="^--strategy=mirrored: "):
        distribute.eval_shard("mirrored")


def test_per_example_penalties_averaged_per_half_batch_sum_to_the_batch_penalty():
    critic = lambda x, training=False: tf.reduce_sum(x ** 3, axis=[1, 2, 3])  # noqa: E731
    real = tf.random.stateless_uniform([6, 3, 4, 1], [1, 2])
    fake = tf.random.stateless_uniform([6, 3, 4, 1], [3, 4])
    alpha = tf.random.stateless_uniform([6], [5, 6])
    halves = [tf.nn.compute_average_loss(gan.per_example_gradient_penalty(
        critic, real[s], fake[s], alpha[s]), global_batch_size=6)
        for s in (slice(0, 3), slice(3, 6))]
    np.testing.assert_allclose(float(halves[0] + halves[1]),
                               float(gan.gradient_penalty(critic, real, fake, alpha)), rtol=1e-6)


# --- bad input from the command line ------------------------------------------------------------

def run_env(env, *args):
    proc = subprocess.run([sys.executable, MAIN, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=PROCESS_TIMEOUT, env={**os.environ, **env})
    return proc.returncode, proc.stdout, proc.stderr


def test_malformed_tf_config_exits_2_naming_tf_config_and_writes_nothing(tmp_path):
    before = tree_digest(tmp_path)
    rc, _, err = run_env({"TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1"]}'},
                         *smoke_args(tmp_path / "train", "--strategy=multi_worker"))
    assert rc == 2
    assert error_line(err).startswith("error: TF_CONFIG: not valid JSON")
    assert tree_digest(tmp_path) == before and not (tmp_path / "train").exists()


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="needs a CPU-only host")
def test_mirrored_on_one_cpu_device_exits_2_naming_the_strategy_and_writes_nothing(tmp_path):
    rc, _, err = run_main(*smoke_args(tmp_path / "train", "--strategy=mirrored"),
                          timeout=PROCESS_TIMEOUT)
    assert rc == 2
    line = error_line(err)
    assert line.startswith("error: --strategy=mirrored: ") and "--cpu_devices" in line
    assert not (tmp_path / "train").exists()


# --- mirrored: two logical CPUs -----------------------------------------------------------------

def test_mirrored_gan_on_two_logical_cpus_trains_as_one_device_with_the_same_global_batch(
        smoke_run, tmp_path):
    rc, out, err = run_main(*smoke_args(tmp_path / "train", "--strategy=mirrored",
                                        "--cpu_devices=2"), timeout=PROCESS_TIMEOUT)
    assert rc == 0, err
    assert_same_losses(out, smoke_run.stdout)
    assert_same_training_state(smoke_run.train_dir, tmp_path / "train")


def test_mirrored_classifier_on_two_logical_cpus_trains_as_one_device(smoke_classifier,
                                                                      tmp_path):
    rc, _, err = run_main(f"--flagfile={SMOKE_FLAGFILE}", "--mode=train_classifier",
                          f"--model={SMOKE_CLASSIFIER_MODEL}", f"--train_dir={tmp_path / 't'}",
                          "--strategy=mirrored", "--cpu_devices=2", timeout=PROCESS_TIMEOUT)
    assert rc == 0, err
    assert_same_training_state(smoke_classifier.train_dir, tmp_path / "t")


def test_batch_size_not_divisible_by_the_replicas_exits_2_naming_batch_size(tmp_path):
    rc, _, err = run_main(*smoke_args(tmp_path / "train", "--strategy=mirrored",
                                      "--cpu_devices=3"), timeout=PROCESS_TIMEOUT)
    assert rc == 2
    assert error_line(err).startswith("error: --batch_size: 8 (the global batch) is not "
                                      "divisible by the 3 replicas")
    assert not (tmp_path / "train").exists()


# --- multi_worker: two processes on 127.0.0.1 ---------------------------------------------------

@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """(train_dir, [stdout of worker 0, worker 1]) of the smoke GAN run on 2 workers."""
    folder = tmp_path_factory.mktemp("two_workers")
    outs = run_cluster(folder, 2, *smoke_args(folder / "train", "--strategy=multi_worker"))
    return folder / "train", outs


def test_two_workers_train_the_gan_as_one_process(two_workers, smoke_run):
    train_dir, outs = two_workers
    for out in outs:
        assert_same_losses(out, smoke_run.stdout)
    assert_same_training_state(smoke_run.train_dir, train_dir)


def test_only_the_chief_keeps_files_and_workers_leave_no_temporary_folder(two_workers,
                                                                         smoke_run):
    train_dir, outs = two_workers
    assert sorted(os.listdir(train_dir)) == sorted(os.listdir(smoke_run.train_dir))
    assert "saved" in outs[0] and "saved" not in outs[1]


def test_checkpoints_move_between_one_process_and_two_workers_both_ways(two_workers, smoke_run,
                                                                       tmp_path):
    more = f"--iterations={SMOKE_ITERATIONS + 2}"
    one_then_two, two_then_one = tmp_path / "one_then_two", tmp_path / "two_then_one"
    shutil.copytree(smoke_run.train_dir, one_then_two)
    shutil.copytree(two_workers[0], two_then_one)
    rc, out, err = run_main(*smoke_args(two_then_one, more), timeout=PROCESS_TIMEOUT)
    assert rc == 0, err
    assert f"resuming from step {SMOKE_ITERATIONS}" in out
    for out in run_cluster(tmp_path, 2, *smoke_args(one_then_two, more,
                                                    "--strategy=multi_worker")):
        assert f"resuming from step {SMOKE_ITERATIONS}" in out
    assert_same_training_state(one_then_two, two_then_one)


def test_a_worker_killed_mid_run_fails_the_run_with_one_line_and_a_restart_resumes(tmp_path):
    train_dir = tmp_path / "train"
    cluster = Cluster(tmp_path, tf_configs(2), *smoke_args(train_dir, "--iterations=1000",
                                                           "--strategy=multi_worker"))
    try:
        deadline = time.time() + PROCESS_TIMEOUT
        while not (train_dir / "ckpt" / "checkpoint").exists():
            assert time.time() < deadline and cluster.procs[0].poll() is None, \
                cluster.output(0, err=True)
            time.sleep(0.5)
        cluster.kill(1)
        rc, _, err = cluster.wait()[0]
    finally:
        cluster.stop()
    assert rc == 2, err
    line = error_line(err)
    assert "a worker of the cluster stopped" in line and "restart every worker" in line
    step = int(tf.train.latest_checkpoint(str(train_dir / "ckpt")).rsplit("-", 1)[1])
    for out in run_cluster(tmp_path, 2, *smoke_args(train_dir, f"--iterations={step + 2}",
                                                    "--strategy=multi_worker")):
        assert f"resuming from step {step}" in out and f"done: step {step + 2}" in out


# --- sharded whitebox ---------------------------------------------------------------------------

def test_whitebox_sharded_over_two_workers_writes_the_metrics_of_one_process(
        smoke_run, smoke_classifier, tmp_path):
    args = [f"--flagfile={SMOKE_FLAGFILE}", "--mode=whitebox", f"--model={SMOKE_CLASSIFIER_MODEL}",
            f"--gan_dir={smoke_run.train_dir}", f"--classifier_dir={smoke_classifier.train_dir}",
            "--attack=fgsm", "--defense=defense_gan", "--gradient=bpda", "--num_tests=12"]
    # Separate parents: no shared cache of clean reconstructions between the two runs.
    one = subprocess.Popen([sys.executable, MAIN, *args, f"--results_dir={tmp_path}/one/run"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        outs = run_cluster(tmp_path, 2, *args, f"--results_dir={tmp_path}/two/run",
                           "--strategy=multi_worker")
        out, _ = one.communicate(timeout=PROCESS_TIMEOUT)
        assert one.returncode == 0, out
    finally:
        if one.poll() is None:
            os.killpg(one.pid, signal.SIGKILL)
    assert "shard 1 of 2 done" in outs[1]
    results = [json.loads((tmp_path / part / "run" / "results.json").read_text())
               for part in ("one", "two")]
    assert results[0]["metrics"]["num_images"] == 12
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["settings"] == results[1]["settings"]
    for result in results:  # every batch's timing is gathered (3 batches of 4, 2 projections)
        assert result["timing"]["projected_images"] == 24
