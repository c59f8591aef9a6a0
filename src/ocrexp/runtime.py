"""Process-wide TensorFlow setup: device choice, seeding, determinism, mixed precision."""

from __future__ import annotations

import functools
import os
import sys

from ocrexp.console import tensorflow_chatter_hidden
from ocrexp.errors import ConfigError


def configure(trainer, seed: int) -> str:
    """Apply ``trainer.device/deterministic/mixed_precision`` and return the device description.

    Must run before the first TensorFlow op: hiding GPUs is only possible at start-up.
    """
    device = str(getattr(trainer.device, "value", trainer.device))
    import keras
    import tensorflow as tf

    with tensorflow_chatter_hidden():  # probing for GPUs logs CUDA errors on machines without one
        gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise ConfigError(
            "trainer.device=gpu was asked for but TensorFlow sees no GPU; install the CUDA build "
            "(pip install 'ocrexp[gpu]') or use trainer.device=auto or cpu."
        )
    if device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    for gpu in gpus:  # share the card with other jobs instead of grabbing all memory
        tf.config.experimental.set_memory_growth(gpu, True)
    if trainer.get("cpu_replicas") and not gpus:
        _split_cpu(tf, int(trainer.cpu_replicas))

    keras.backend.clear_session()  # sweep workers run many trials in one process
    keras.utils.set_random_seed(seed)
    if trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    # Set every time: a sweep worker's next trial must not inherit the last one's policy.
    policy, note = precision_policy(trainer.mixed_precision, bool(gpus), not gpus and cpu_has_bfloat16())
    if note:
        print(note, file=sys.stderr)
    keras.mixed_precision.set_global_policy(policy)
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        return f"gpu:{name}" + (f" x{len(gpus)}" if len(gpus) > 1 else "")
    return f"cpu:{os.cpu_count()} cores"


def precision_policy(setting, on_gpu: bool, cpu_bfloat16: bool) -> tuple[str, str | None]:
    """The Keras dtype policy for ``trainer.mixed_precision`` (true, false or auto) on this device, and
    a note for the user when true cannot take effect.

    true: float16 compute on GPUs, bfloat16 on CPUs that compute it in hardware. auto: only where it
    measured faster (docs/performance.md): on such CPUs, not on GPUs, where ocrexp's models are too
    small for it to pay (on an H100, 0.78-0.92x the float32 images/s, and later to 99 %).
    """
    if setting is False:
        return "float32", None
    if on_gpu:
        return ("mixed_float16" if setting is True else "float32"), None
    if cpu_bfloat16:
        return "mixed_bfloat16", None  # oneDNN runs bfloat16 matmuls and convolutions natively there
    note = ("note: trainer.mixed_precision is ignored on this CPU (it lacks AVX512-BF16/AMX, so bfloat16 "
            "would be slower, not faster).")
    return "float32", note if setting is True else None


@functools.cache
def cpu_has_bfloat16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 in hardware (x86 AVX512-BF16 or AMX; Linux only: elsewhere
    False, and mixed precision stays off on CPU)."""
    try:
        with open(cpuinfo_path) as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def _split_cpu(tf, n: int) -> None:
    """Present the CPU as ``n`` logical devices (possible only before TensorFlow's first op; a sweep
    worker that already made the same split keeps it)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != n:
            raise ConfigError(f"trainer.cpu_replicas={n} cannot take effect in this process, which already "
                              f"runs TensorFlow on {len(tf.config.list_logical_devices('CPU'))} CPU device(s); "
                              "start a new process for it.") from None


def distribution(trainer):
    """``tf.distribute.MirroredStrategy`` over the GPUs (or the logical CPUs of ``trainer.cpu_replicas``)
    for ``trainer.strategy=mirrored``; None for one device."""
    if trainer.get("strategy") != "mirrored":
        return None
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return _mirrored(tuple(devices))


@functools.cache
def _mirrored(devices: tuple[str, ...]):
    """One strategy per process and device set: a sweep worker runs many trials, and a second
    MirroredStrategy in the same process collides with the first one's collective ops."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices=list(devices))
