"""The hardware catalog, its calibration file and measuring this CPU."""

import json
import math

import pytest
import torch

from llm_reference import hardware as H
from llm_reference.errors import UserError
from llm_reference.flops import flops_per_token
from llm_reference.model_config import ModelConfig


def test_hardware_catalog():
    for key in ("cpu", "M2Max", "M3Max", "T4", "L4", "RTX4090", "A100-40GB",
                "A100-80GB", "H100", "H200"):
        hw = H.HARDWARE[key]
        assert hw.bf16_tflops >= hw.fp32_tflops > 0
        assert 0 <= hw.price_usd[0] <= hw.price_usd[1]
        assert hw.memory_gib > 0 and hw.bandwidth_gbs > 0
        assert hw.source and hw.date  # where each number comes from, and when
        assert 0 < hw.mfu <= 1
    # vendor datasheets, dense (no sparsity)
    assert H.HARDWARE["H100"].bf16_tflops == 989.4
    assert H.HARDWARE["A100-80GB"].bf16_tflops == 312.0
    assert H.HARDWARE["RTX4090"].bf16_tflops == 165.2
    assert H.HARDWARE["T4"].dtype == "float16"  # Turing has no bf16
    assert H.HARDWARE["cpu"].price_usd == (0.0, 0.0)


def test_rows_are_keyword_only():
    with pytest.raises(TypeError):  # twelve numbers nobody could tell apart
        H.Hardware("X", "a device", 1.0, 1.0, 1.0, 1.0, 1.0, (0.0, 0.0))


def test_find_hardware_by_other_spellings():
    assert H.find_hardware("rtx-4090").key == H.find_hardware("4090").key == "RTX4090"
    assert H.find_hardware("a100").key == "A100-80GB"
    assert H.find_hardware("A100 40GB").key == "A100-40GB"
    with pytest.raises(UserError, match="unknown hardware 'B300'; choose one of"):
        H.find_hardware("B300")


def test_calibration_names_its_sources(tmp_path):
    for name in ("cpu", "data_prepare", "default_corpus"):
        assert H.CALIBRATION[name]["source"]
    for impl in ("ours", "hf"):
        assert H.CALIBRATION["tokenizer_train"][impl]["source"]
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(H.CALIBRATION))
    H.save_calibration({"cpu": {"peak_fp32_tflops": 1.0, "mfu": 0.5}}, path)
    saved = H.load_calibration(path)
    assert saved["cpu"] == {"peak_fp32_tflops": 1.0, "mfu": 0.5}
    assert saved["data_prepare"] == H.CALIBRATION["data_prepare"]
    cpu = H.cpu_hardware(saved["cpu"])
    assert cpu.peak_tflops == 1.0 and cpu.date == H.DEFAULT_CPU["date"]
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="bad.json"):
        H.load_calibration(tmp_path / "bad.json")


@pytest.mark.slow
def test_measure_cpu():
    section = H.measure_cpu(steps=2)
    assert section["peak_fp32_tflops"] > 0 and 0 < section["mfu"] < 2
    assert section["threads"] == torch.get_num_threads()
    assert math.isfinite(section["bandwidth_gbs"]) and section["source"]
    assert H.cpu_hardware(section).date == section["date"]


@pytest.mark.parametrize("device_name, key", [
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA L40", "L40"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA H100 PCIe", "H100-PCIe"),
    ("NVIDIA H100 NVL", "H100-NVL"),
    ("NVIDIA H100 80GB HBM3", "H100"),
    ("NVIDIA H100 SXM5 80GB", "H100"),
    ("NVIDIA H200", "H200"),
    ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
    ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
    ("NVIDIA A100 80GB PCIe", "A100-80GB"),
    ("Tesla T4", "T4"),
    ("NVIDIA GeForce RTX 4090", "RTX4090"),
])
def test_gpu_names_match_whole_model_names(device_name, key):
    # the strings torch.cuda.get_device_name() returns on these cards
    assert H.hardware_for_device_name(device_name).key == key


@pytest.mark.parametrize("device_name", [
    "NVIDIA GeForce RTX 4080", "NVIDIA H200 NVL", "NVIDIA B200", "Tesla V100-SXM2-16GB",
    "NVIDIA A100", "cpu", ""])
def test_unknown_gpus_get_no_row(device_name):
    assert H.hardware_for_device_name(device_name) is None


def test_tf32_peak_for_fp32_matmuls():
    h100 = H.HARDWARE["H100"]
    assert h100.peak_tflops_for("float32", tf32=True) == 494.7
    assert h100.peak_tflops_for("float32") == 67.0
    assert h100.peak_tflops_for("bfloat16", tf32=True) == 989.4
    assert H.HARDWARE["T4"].tf32_tflops == H.HARDWARE["T4"].fp32_tflops  # Turing
    for hw in H.HARDWARE.values():
        assert hw.fp32_tflops <= hw.tf32_tflops <= hw.bf16_tflops


def test_calibrate_times_the_planned_shape_in_wall_clock():
    tiny = ModelConfig(vocab_size=64, context_length=16, n_layer=1, n_head=2,
                       d_model=32)
    section = H.calibrate_cpu(tiny, micro_batch=2, steps=2)
    assert section["tokens_per_second"] > 0 and "1 layers" in section["shape"]
    # the planner's achieved rate is the measured one
    cpu = H.cpu_hardware(section)
    assert cpu.peak_tflops * 1e12 * cpu.mfu == pytest.approx(
        section["tokens_per_second"] * flops_per_token(tiny), rel=0.01)
    assert "wall-clock" in section["source"] and "here" in cpu.name


def test_user_calibration_file(tmp_path):
    path = tmp_path / "calibration.json"
    assert H.load_user_calibration(path) is None  # never calibrated
    path.write_text('{"cpu": {"mfu": 0.5}}')
    with pytest.raises(UserError, match="--calibrate"):
        H.load_user_calibration(path)
    path.write_text("{not json")
    with pytest.raises(UserError, match="cannot read"):
        H.load_user_calibration(path)
