"""The CPU as /proc/cpuinfo describes it, and the precision `auto` picks from it, on fake texts of
every kind of machine the project has met: an AVX2-only CPU must compute in fp32, a native-bf16 one
in bf16."""

from __future__ import annotations

import textwrap

import pytest
import torch

from weightspace import hardware
from weightspace.model import precision as numerics
from weightspace.probe import features
from weightspace.train import finetune

X86_COMMON = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
    "sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl pni pclmulqdq "
    "ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm "
    "abm sse4a bmi1 avx2 smep bmi2 rdseed adx smap clflushopt sha_ni xsaveopt xsavec xgetbv1 xsaves"
)
AVX512 = (
    "avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx512_vnni avx512_bitalg "
    "avx512_vpopcntdq"
)


def x86(vendor: str, family: int, model: int, name: str, flags: str, processors: int = 2) -> str:
    block = textwrap.dedent(f"""\
        processor\t: {{i}}
        vendor_id\t: {vendor}
        cpu family\t: {family}
        model\t\t: {model}
        model name\t: {name}
        stepping\t: 1
        flags\t\t: {flags}
        bogomips\t: 4890.85
        """)
    return "\n".join(block.replace("{i}", str(i)) for i in range(processors))


AARCH64_FEATURES_V1 = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma "
    "lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg "
    "dcpodp svei8mm svebf16 i8mm bf16 dgh rng"
)
AARCH64_FEATURES_N1 = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
    "asimddp ssbs"
)


def aarch64(features_line: str) -> str:
    return textwrap.dedent(f"""\
        processor\t: 0
        BogoMIPS\t: 2100.00
        Features\t: {features_line}
        CPU implementer\t: 0x41
        CPU architecture: 8
        CPU variant\t: 0x1
        CPU part\t: 0xd40
        CPU revision\t: 1
        """)


# (text, native bf16, what cpu_name must contain)
MACHINES = {
    # the two CPUs of this project's machine kind seen so far, as the VM reports them (a bare "AMD
    # EPYC"), and a Zen 3 of the same kind
    "zen1-avx2": (x86("AuthenticAMD", 23, 1, "AMD EPYC", X86_COMMON), False, "Zen 1"),
    "zen3-avx2": (
        x86("AuthenticAMD", 25, 1, "AMD EPYC", X86_COMMON + " vaes vpclmulqdq"),
        False,
        "Zen 3",
    ),
    "zen4-avx512-bf16": (
        x86("AuthenticAMD", 25, 17, "AMD EPYC", f"{X86_COMMON} {AVX512} avx512_bf16"),
        True,
        "Zen 4",
    ),
    # AVX-512 without its bf16 extension (Skylake-SP) emulates bf16 like AVX2
    "skylake-avx512": (
        x86(
            "GenuineIntel",
            6,
            85,
            "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz",
            f"{X86_COMMON} {AVX512}",
        ),
        False,
        "Gold 6148",
    ),
    "sapphire-rapids-amx": (
        x86(
            "GenuineIntel",
            6,
            143,
            "Intel(R) Xeon(R) Platinum 8480+",
            f"{X86_COMMON} {AVX512} avx512_bf16 amx_bf16 amx_tile amx_int8",
        ),
        True,
        "8480+",
    ),
    "graviton3-bf16": (aarch64(AARCH64_FEATURES_V1), True, ""),
    "graviton2": (aarch64(AARCH64_FEATURES_N1), False, ""),
}


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """Point the module at a fake /proc/cpuinfo (and forget the real one it may have cached)."""

    def use(text: str):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setattr(hardware, "CPUINFO", path)
        hardware._cpuinfo.cache_clear()

    yield use
    hardware._cpuinfo.cache_clear()


@pytest.mark.parametrize("kind", MACHINES)
def test_auto_precision_follows_the_cpu_flags(machine, kind):
    text, native, name = MACHINES[kind]
    machine(text)
    cpu = torch.device("cpu")
    assert hardware.cpu_has_native_bf16() is native
    # auto: bf16 where the hardware computes it, fp32 where bf16 would be emulated (~11x slower on a
    # Zen 1)
    assert numerics.resolve(cpu, "auto", choices=finetune.PRECISIONS) == (
        "bf16" if native else "fp32"
    )
    assert features.precision(cpu, "auto") == ("bf16" if native else "fp32")
    assert numerics.autocast_dtype(numerics.resolve(cpu, "auto")) == (
        torch.bfloat16 if native else None
    )
    # forced settings ignore the CPU: the tests run bf16 emulated on AVX2
    assert numerics.resolve(cpu, "bf16") == "bf16" and numerics.resolve(cpu, "no") == "fp32"
    assert features.precision(cpu, "bf16") == "bf16" and features.precision(cpu, "no") == "fp32"
    assert name in hardware.cpu_name()
    assert hardware.describe()["native_bf16"] is native


def test_only_the_first_processor_is_read_and_avx512_alone_is_not_bf16(machine):
    text = x86(
        "AuthenticAMD",
        25,
        17,
        "AMD EPYC 9354P 32-Core Processor",
        f"{X86_COMMON} {AVX512} avx512_bf16",
        1,
    )
    machine(text + "\n" + x86("AuthenticAMD", 25, 1, "other", X86_COMMON, 1))
    assert hardware.cpu_name() == "AMD EPYC 9354P 32-Core Processor"  # a full name is left as it is
    # not the second's flags
    assert "avx512_bf16" in hardware.cpu_flags() and hardware.cpu_has_native_bf16()
    assert hardware.parse_cpuinfo("") == {}


def test_a_bare_vm_cpu_name_gets_its_family_and_generation(machine):
    machine(MACHINES["zen3-avx2"][0])
    assert hardware.cpu_name() == "AMD EPYC (family 25 model 1, Zen 3)"
    machine(MACHINES["zen1-avx2"][0])
    assert hardware.cpu_name() == "AMD EPYC (family 23 model 1, Zen 1)"


def test_no_cpuinfo_means_no_native_bf16(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "absent")
    hardware._cpuinfo.cache_clear()
    try:
        assert not hardware.cpu_has_native_bf16()
        assert features.precision("cpu", "auto") == "fp32"
        assert hardware.cpu_name()  # the platform's name, never empty
    finally:
        hardware._cpuinfo.cache_clear()
