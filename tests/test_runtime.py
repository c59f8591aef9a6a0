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
