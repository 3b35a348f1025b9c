"""`tf.distribute` strategies from --strategy / TF_CONFIG, validated, and the few helpers the
distributed trainers and the sharded evaluation share.

    default       one device, the code path of a plain run (no strategy object at all, so
                  results stay bit-identical to a run without --strategy)
    mirrored      every local GPU, or on a CPU-only machine --cpu_devices logical CPUs (the
                  physical CPU split with tf.config.set_logical_device_configuration; for tests)
    multi_worker  MultiWorkerMirroredStrategy, one process per machine, cluster from TF_CONFIG
    tpu           TPUStrategy from TPUClusterResolver: wired, never run (no TPU here)

--batch_size is always the GLOBAL batch (the release's 50): each of R replicas computes
batch_size / R examples per step and the gradients are summed across replicas from losses
averaged over the global batch, so one step is the same optimisation step at any R.

Data: the training order is a pure function of (seed, step) (`data.resumable_batches`), so every
worker builds the global batch of its step and replica r takes examples [r*b, (r+1)*b)
(`split_batch`): the same images a one-device run sees at that step, in the same order, and a
resumed run needs no iterator state.
"""

import json
import os
import shutil

import tensorflow as tf

from defense_gan.errors import ConfigError

CLUSTER_TASKS = ("chief", "worker")  # MultiWorkerMirroredStrategy takes no ps / evaluator


def _tf_config_error(message: str) -> ConfigError:
    return ConfigError(f"TF_CONFIG: {message}")


def _check_address(address, where: str) -> None:
    if not isinstance(address, str) or address.count(":") < 1:
        raise _tf_config_error(f"{where} must be a 'host:port' string, got {address!r}")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _tf_config_error(f"{where} must be a 'host:port' string with a port in "
                               f"1..65535, got {address!r}")


def parse_tf_config(text: str) -> dict:
    """The TF_CONFIG JSON `text` as a dict, checked for MultiWorkerMirroredStrategy:
    {"cluster": {"chief": [one "host:port"], "worker": ["host:port", ...]},
     "task": {"type": "chief" | "worker", "index": i}}. Raises a one-line ConfigError naming
    TF_CONFIG for anything else."""
    try:
        spec = json.loads(text)
    except ValueError as err:
        raise _tf_config_error(f"not valid JSON ({err})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict) \
            or not isinstance(spec.get("task"), dict):
        raise _tf_config_error('must be a JSON object with "cluster" and "task" objects')
    cluster, task = spec["cluster"], spec["task"]
    unknown = sorted(set(cluster) - set(CLUSTER_TASKS))
    if unknown:
        raise _tf_config_error(f"cluster task type(s) {', '.join(unknown)} are not supported "
                               f"(multi_worker takes {' and '.join(CLUSTER_TASKS)})")
    addresses = []
    for kind, members in cluster.items():
        if not isinstance(members, list) or not members:
            raise _tf_config_error(f'cluster "{kind}" must be a non-empty list of addresses')
        for i, address in enumerate(members):
            _check_address(address, f'cluster "{kind}"[{i}]')
        addresses += members
    if len(cluster.get("chief", [])) > 1:
        raise _tf_config_error('cluster "chief" must hold one address')
    if len(set(addresses)) != len(addresses):
        raise _tf_config_error("an address appears twice in the cluster")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise _tf_config_error(f'task "type" {kind!r} is not a task type of the cluster '
                               f"({', '.join(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) or not \
            0 <= index < len(cluster[kind]):
        raise _tf_config_error(f'task "index" {index!r} is not in 0..{len(cluster[kind]) - 1} '
                               f'for type "{kind}"')
    return spec


def tf_config() -> dict | None:
    """The validated TF_CONFIG of this process, or None when the variable is unset or empty."""
    text = os.environ.get("TF_CONFIG", "")
    return parse_tf_config(text) if text.strip() else None


def required_tf_config() -> dict:
    """`tf_config()`, which --strategy=multi_worker requires."""
    spec = tf_config()
    if spec is None:
        raise ConfigError("TF_CONFIG: --strategy=multi_worker needs the TF_CONFIG environment "
                          "variable (cluster and task; see README 'Running on a cluster')")
    return spec


def task_shard(spec: dict) -> tuple:
    """(index, count) of this task in the cluster: the chief is 0, worker i is i + 1 (i without
    a chief, where worker 0 is the chief, as TensorFlow counts)."""
    cluster, task = spec["cluster"], spec["task"]
    chiefs = len(cluster.get("chief", []))
    count = chiefs + len(cluster.get("worker", []))
    index = task["index"] if task["type"] == "chief" else chiefs + task["index"]
    return index, count


def eval_shard(strategy: str, shard_index: int = 0, num_shards: int = 1) -> tuple:
    """(index, count) of this process's share of a sharded evaluation: from TF_CONFIG's task
    with --strategy=multi_worker (no collective ops are needed, so no strategy is built),
    else --shard_index / --num_shards. Shard 0 (the chief) gathers the records."""
    if strategy == "default":
        return shard_index, num_shards
    if strategy == "multi_worker":
        return task_shard(required_tf_config())
    raise ConfigError(f"--strategy={strategy}: evaluation runs on one device per process; "
                      "shard it over processes with --strategy=multi_worker or "
                      "--num_shards/--shard_index")


def set_cpu_devices(count: int) -> None:
    """Split the physical CPU into `count` logical devices (before TensorFlow uses a device)."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError as err:
        raise ConfigError(f"--cpu_devices: cannot split the CPU now ({err}); it must happen "
                          "before TensorFlow runs anything") from None


def make_strategy(name: str, cpu_devices: int = 0):
    """The tf.distribute.Strategy for --strategy=`name`, or None for "default" (the plain
    one-device code path). Call it before anything else touches TensorFlow (logical CPUs and
    MultiWorkerMirroredStrategy must be configured first). A strategy that does not fit the
    devices or TF_CONFIG present is a one-line ConfigError."""
    if name == "default":
        return None
    if name == "mirrored":
        if cpu_devices:
            set_cpu_devices(cpu_devices)
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        if len(devices) < 2:
            raise ConfigError(
                f"--strategy=mirrored: this machine shows {len(devices)} device "
                f"({', '.join(devices)}); mirrored needs at least 2 (GPUs, or --cpu_devices=N "
                "to split the CPU for testing); use --strategy=default for one device")
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        spec = required_tf_config()
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        try:
            return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as err:
            task = spec["task"]
            address = spec["cluster"][task["type"]][task["index"]]
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(f"TF_CONFIG: task {task['type']} {task['index']} cannot start "
                              f"its server at {address} (is the port free on this machine?): "
                              f"{first[:200]}") from None
    if name == "tpu":  # wired but untested: no TPU on the machines this was written on
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(f"--strategy=tpu: no TPU found ({first[:200]})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError(f"--strategy: unknown strategy '{name}'")


def replicas(strategy) -> int:
    return strategy.num_replicas_in_sync if strategy is not None else 1


def per_replica_batch(strategy, global_batch: int, flag: str = "batch_size") -> int:
    """global_batch / replicas, or a ConfigError naming --flag when it does not divide."""
    n = replicas(strategy)
    if global_batch % n:
        raise ConfigError(f"--{flag}: {global_batch} (the global batch) is not divisible by "
                          f"the {n} replicas of the strategy")
    return global_batch // n


def is_chief(strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def worker_dir(folder: str, strategy) -> str:
    """Where this process writes what lives in `folder`: `folder` on the chief; on other
    workers a private `.tmp-worker-<id>` inside it (every worker must take part in a
    checkpoint save, but only the chief's copy is kept; see `discard_worker_dir`)."""
    if is_chief(strategy):
        return folder
    return os.path.join(folder, f".tmp-worker-{strategy.cluster_resolver.task_id}")


def discard_worker_dir(folder: str, strategy) -> None:
    """Remove a non-chief worker's copy written under `worker_dir(folder, strategy)`."""
    if not is_chief(strategy):
        shutil.rmtree(worker_dir(folder, strategy), ignore_errors=True)


def split_batch(strategy, batch, axis: int = 0):
    """A distributed value from a global batch (a tensor or nest of tensors, identical on
    every worker): replica r gets slice [r*b, (r+1)*b) of `axis`, b = size / replicas."""
    n = strategy.num_replicas_in_sync

    def value_fn(ctx):
        def take(t):
            b = t.shape[axis] // n
            begin = [0] * len(t.shape)
            begin[axis] = ctx.replica_id_in_sync_group * b
            size = list(t.shape)
            size[axis] = b
            return tf.slice(t, begin, size)
        return tf.nest.map_structure(take, batch)

    return strategy.experimental_distribute_values_from_function(value_fn)


def replica_slice(t: tf.Tensor, count) -> tf.Tensor:
    """Inside strategy.run: this replica's `count` rows of a global tensor `t` (the same on
    every replica), matching `split_batch`."""
    ctx = tf.distribute.get_replica_context()
    begin = ctx.replica_id_in_sync_group * count
    return t[begin:begin + count]


def reduce_sum(strategy, values: dict) -> dict:
    """{name: per-replica value} -> {name: sum over replicas} (losses already divided by the
    global batch sum to the global mean)."""
    return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in values.items()}


WORKER_LOST_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                      tf.errors.CancelledError, tf.errors.AbortedError)
