"""The hardware catalog, its calibration file and measuring this CPU."""

import json
import math

import pytest
import torch

from llm_reference import hardware as H
from llm_reference.errors import UserError


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
