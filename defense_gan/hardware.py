"""What the machine can compute fast: bfloat16 support and thread settings.

bfloat16 pays off only where the hardware has bfloat16 arithmetic: a CPU with AVX512-BF16 or
AMX-BF16 (oneDNN uses them), or a GPU. Elsewhere TensorFlow emulates bfloat16 and is slower
than float32, so `resolve_precision` falls back to float32 with a message.
"""

import sys

CPUINFO = "/proc/cpuinfo"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def read_cpuinfo(path: str = CPUINFO) -> str:
    """The text of /proc/cpuinfo ('' where there is none, e.g. macOS)."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> set:
    """The CPU feature flags of the first processor in `cpuinfo` (default: read_cpuinfo())."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def bf16_cpu_flags(cpuinfo: str | None = None) -> list:
    """The bfloat16 flags (avx512_bf16, amx_bf16) the CPU has, sorted."""
    return sorted(cpu_flags(cpuinfo) & set(BF16_CPU_FLAGS))


def has_gpu() -> bool:
    import tensorflow as tf
    return bool(tf.config.list_physical_devices("GPU"))


def bf16_supported() -> tuple:
    """(supported: bool, why: str)."""
    flags = bf16_cpu_flags()
    if flags:
        return True, "CPU has " + ", ".join(flags)
    if has_gpu():
        return True, "a GPU is available"
    return False, ("this CPU has neither AVX512-BF16 nor AMX-BF16 (no avx512_bf16/amx_bf16 in "
                   f"{CPUINFO}) and there is no GPU")


def resolve_precision(precision: str, out=None) -> str:
    """`precision`, or "float32" (with a one-line message on `out`, default stderr) when
    bfloat16 is asked for on hardware without bfloat16 arithmetic."""
    if precision != "bfloat16":
        return precision
    supported, why = bf16_supported()
    if supported:
        return precision
    print(f"[precision] --precision=bfloat16 requested but {why}: bfloat16 would be emulated "
          "and slower, so float32 is used instead.", file=out or sys.stderr, flush=True)
    return "float32"


def thread_settings() -> dict:
    """TensorFlow's thread-pool sizes as configured (0 means TF's default: all cores)."""
    import os

    import tensorflow as tf
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "cpu_count": os.cpu_count(),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset)")}
