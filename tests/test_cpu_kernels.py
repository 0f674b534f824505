"""The CPU kernel pin: set before torch loads on a CPU with AVX2, never over a variable the user
set, never with GFL_REPRO_CPU_KERNELS=native, and in force for torch in a fresh process."""

import os
import subprocess
import sys

import pytest

from gfl_repro.cpu_kernels import OPT_OUT, PIN, has_avx2, pin, pinned

FLAGS = "processor\t: {n}\nflags\t\t: fpu sse2 avx {extra}\n"


@pytest.fixture
def cpuinfo(tmp_path):
    def write(extra: str):
        path = tmp_path / "cpuinfo"
        path.write_text("".join(FLAGS.format(n=n, extra=extra) for n in range(2)))
        return path

    return write


def test_pin_sets_the_four_variables_on_an_avx2_cpu_and_keeps_a_users_value(cpuinfo):
    environ = {"MKL_CBWR": "COMPATIBLE"}
    added = pin(environ, cpuinfo("fma avx2 avx512f"))
    assert added == {k: v for k, v in PIN.items() if k != "MKL_CBWR"}
    assert environ == {**PIN, "MKL_CBWR": "COMPATIBLE"} and pinned(environ) == environ


@pytest.mark.parametrize("extra", ["fma", "avx2_fake avx512f"])  # no AVX2 flag: no pin
def test_no_pin_without_avx2(cpuinfo, extra):
    environ = {}
    assert pin(environ, cpuinfo(extra)) == {} and environ == {}
    assert not has_avx2(cpuinfo(extra))


def test_no_pin_when_the_user_opts_out_or_there_is_no_cpuinfo(cpuinfo, tmp_path):
    environ = {OPT_OUT: "Native"}
    assert pin(environ, cpuinfo("avx2")) == {} and environ == {OPT_OUT: "Native"}
    assert pin({}, tmp_path / "absent") == {}


def _capability(env: dict) -> str:
    code = "import gfl_repro, torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    return out.stdout.strip()


@pytest.mark.skipif(not has_avx2(), reason="the CPU has no AVX2: nothing is pinned")
def test_importing_the_package_pins_torch_in_a_fresh_process():
    clean = {k: v for k, v in os.environ.items() if k not in PIN and k != OPT_OUT}
    assert _capability(clean) == "AVX2"
    assert _capability({**clean, "ATEN_CPU_CAPABILITY": "default"}) == "DEFAULT"  # the user's
