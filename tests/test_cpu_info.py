"""The CPU a run or a benchmark names (lib.runs.cpu_info): model name, family and model numbers and
the SIMD extensions that decide its speed, so timings from AVX-512 and AVX2-only machines of the
same "kind" are not compared as one."""
from lib.runs import SIMD_FLAGS, cpu_info, device_info

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma
processor\t: 1
cpu family\t: 99
model name\t: something else
flags\t\t: avx512f
"""


def test_the_first_processor_is_named_with_its_family_model_and_simd():
    info = cpu_info(ZEN3)
    assert info == {"cpu": "AMD EPYC", "cpu_id": "family 25 model 1", "simd": ["avx2"]}
    bf16 = cpu_info(ZEN3.replace("fma\n", "fma avx512f avx512_bf16 amx_tile\n", 1))
    assert bf16["simd"] == list(SIMD_FLAGS)


def test_without_cpuinfo_fields_only_the_architecture_is_named():
    info = cpu_info("")
    assert set(info) == {"cpu", "simd"} and info["simd"] == [] and info["cpu"]
    assert {"cpu", "simd", "cpu_count", "cuda"} <= set(device_info())


def test_a_results_page_names_the_cpu_and_the_precision_auto_recipes_trained_in():
    from lib.runs import describe_device

    cpu = {"cpu": "AMD EPYC", "cpu_id": "family 25 model 1", "simd": ["avx2"], "cpu_bf16": False, "cuda": False}
    assert describe_device(cpu) == 'AMD EPYC, family 25 model 1, avx2; recipes\' "amp": "auto" trained in fp32'
    bf16 = {**cpu, "simd": ["avx2", "avx512f", "avx512_bf16"], "cpu_bf16": True}
    assert describe_device(bf16).endswith("avx2 avx512f avx512_bf16; recipes' \"amp\": \"auto\" trained in bf16")
    assert describe_device({"cpu": "x86_64"}) == "x86_64"  # a run recorded before these fields
    assert describe_device({**cpu, "cuda": True, "gpus": ["NVIDIA H100"]}) == "NVIDIA H100"
    assert describe_device({}) is None
