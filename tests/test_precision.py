"""Number formats on GPUs, checked on the CPU: the bf16 refusal before Ampere, TF32
for float32 and its peak, grouped k/v heads off the flash kernel, RoPE's dtype.

The GPU's name and compute capability are the only things faked here: they are
facts of hardware this machine does not have."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_reference import model as model_module
from llm_reference import precision
from llm_reference.errors import UserError
from llm_reference.model import GPT, ModelConfig, apply_rope, rope_tables
from llm_reference.train import peak_flops

CUDA = torch.device("cuda", 0)


@pytest.fixture
def gpu(monkeypatch):
    """Pretend to be a GPU: `gpu("NVIDIA T4", (7, 5))`."""
    def pretend(name: str, capability: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability",
                            lambda device=None: capability)
    return pretend


@pytest.mark.parametrize("name, capability", [("Tesla T4", (7, 5)),
                                              ("Tesla V100-SXM2-16GB", (7, 0))])
def test_bfloat16_is_refused_before_ampere_with_a_hint(gpu, name, capability):
    gpu(name, capability)
    hint = f'train.dtype: {name} .*no bfloat16.*"float16"'
    with pytest.raises(UserError, match=hint):
        precision.check_dtype(CUDA, "bfloat16")
    precision.check_dtype(CUDA, "float16")  # what it suggests is accepted
    precision.check_dtype(CUDA, "float32")


def test_bfloat16_is_accepted_on_ampere_and_on_the_cpu(gpu):
    gpu("NVIDIA A100-SXM4-80GB", (8, 0))
    precision.check_dtype(CUDA, "bfloat16")
    precision.check_dtype(torch.device("cpu"), "bfloat16")


def test_tf32_is_turned_on_for_cuda_only(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_float32_matmul_precision", calls.append)
    precision.enable_tf32(torch.device("cpu"))
    assert calls == []
    precision.enable_tf32(CUDA)
    assert calls == ["high"]


def test_float32_mfu_uses_the_tf32_peak_on_ampere(gpu, monkeypatch):
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    gpu("NVIDIA A100-SXM4-80GB", (8, 0))
    assert peak_flops(CUDA, "bfloat16") == 312e12
    assert peak_flops(CUDA, "float32") == 156e12  # TF32: half the bf16 peak
    gpu("Tesla T4", (7, 5))  # no TF32 tensor cores: plain fp32
    assert peak_flops(CUDA, "float32") == pytest.approx(8.1e12)
    assert peak_flops(torch.device("cpu"), "float32") is None


def llama(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=64, context_length=16, n_layer=1, n_head=4,
                           n_kv_head=2, d_model=32, position="rope", norm="rmsnorm",
                           mlp="swiglu", bias=False, tie_weights=False, **kw))


def test_grouped_kv_heads_are_expanded_when_flash_cannot_run(monkeypatch):
    """Off the flash kernel (here: a CPU) SDPA gets one k/v head per query head, not
    `enable_gqa`, which only flash supports (the others fall back to plain math)."""
    calls = []
    real = F.scaled_dot_product_attention

    def recording(q, k, v, **kw):
        calls.append((q.size(1), k.size(1), kw.get("enable_gqa")))
        return real(q, k, v, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    x = torch.randint(0, 64, (2, 16))
    logits, _ = llama()(x)
    assert calls == [(4, 4, False)]
    reference, _ = llama(attention="explicit")(x)
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)


class FakeCudaQuery:
    """What `flash_attention_applies` reads of q, as a CUDA tensor would answer."""

    is_cuda, device = True, CUDA

    def __init__(self, dtype: torch.dtype, head_dim: int = 64):
        self.dtype, self.head_dim = dtype, head_dim

    def size(self, dim: int) -> int:
        return self.head_dim


def test_flash_applies_to_16_bit_queries_on_ampere_without_a_mask(gpu):
    applies = model_module.flash_attention_applies
    gpu("NVIDIA H100 80GB HBM3", (9, 0))
    assert applies(FakeCudaQuery(torch.bfloat16), None)
    assert not applies(FakeCudaQuery(torch.float32), None)  # fp32 inference
    assert not applies(FakeCudaQuery(torch.bfloat16), torch.ones(2, 2, dtype=bool))
    assert not applies(FakeCudaQuery(torch.bfloat16, head_dim=512), None)
    assert not applies(torch.zeros(1, 1, 1, 8, dtype=torch.bfloat16), None)  # CPU


def test_rope_keeps_bfloat16_queries_in_bfloat16():
    cos, sin = rope_tables(8, 16)  # float32 tables
    q = torch.randn(1, 2, 16, 8, dtype=torch.bfloat16)
    rotated = apply_rope(q, cos, sin)
    assert rotated.dtype == torch.bfloat16
    torch.testing.assert_close(rotated.float(), apply_rope(q.float(), cos, sin),
                               rtol=2e-2, atol=2e-2)
