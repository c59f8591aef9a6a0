"""Process-wide TensorFlow setup (``ocrexp.runtime``): mixed precision per device."""

from __future__ import annotations

import keras
import pytest

from ocrexp import runtime, train
from ocrexp.config import compose


@pytest.mark.parametrize("flags, expected", [("fpu avx512f avx512_bf16 avx512_vnni", True),
                                             ("fpu sse avx2 amx_bf16 amx_tile", True),
                                             ("fpu sse avx2 avx512f", False)])
def test_bfloat16_hardware_is_read_from_the_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert runtime.cpu_has_bfloat16(str(cpuinfo)) is expected
    assert runtime.cpu_has_bfloat16(str(tmp_path / "missing")) is False


def test_mixed_precision_on_cpu_is_bfloat16_where_the_cpu_has_it_and_the_next_run_starts_float32(capsys):
    try:
        runtime.configure(compose("trainer.mixed_precision=true", "trainer.device=cpu").trainer, 0)
        expected = "mixed_bfloat16" if runtime.cpu_has_bfloat16() else "float32"
        assert keras.mixed_precision.global_policy().name == expected
        assert ("ignored on this CPU" in capsys.readouterr().err) is (expected == "float32")
        assert train._precision() == ("" if expected == "float32" else ", mixed_bfloat16")  # on the header line
        runtime.configure(compose("trainer.device=cpu").trainer, 0)  # a sweep worker's next trial
        assert keras.mixed_precision.global_policy().name == "float32" and train._precision() == ""
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("setting, on_gpu, cpu_bfloat16, policy, noted", [
    (False, True, False, "float32", False),
    (True, True, False, "mixed_float16", False),
    ("auto", True, False, "float32", False),  # measured slower on an H100 for these models
    (False, False, True, "float32", False),
    (True, False, True, "mixed_bfloat16", False),
    ("auto", False, True, "mixed_bfloat16", False),
    (True, False, False, "float32", True),
    ("auto", False, False, "float32", False),  # auto asked for nothing that could not happen
])
def test_each_mixed_precision_setting_picks_a_policy_per_device(setting, on_gpu, cpu_bfloat16, policy, noted):
    chosen, note = runtime.precision_policy(setting, on_gpu, cpu_bfloat16)
    assert chosen == policy and bool(note) is noted


def test_the_speedrun_lets_the_device_choose_its_precision():
    cfg = compose("experiment=speedrun", "trainer.device=cpu")
    assert cfg.trainer.mixed_precision == "auto"
    try:
        runtime.configure(cfg.trainer, 0)
        expected = "mixed_bfloat16" if runtime.cpu_has_bfloat16() else "float32"
        assert keras.mixed_precision.global_policy().name == expected
    finally:
        keras.mixed_precision.set_global_policy("float32")
