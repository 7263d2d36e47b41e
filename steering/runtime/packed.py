"""Packed weight matrices for the fast decoder: 4-bit blocks (the GGUF Q4_1 layout), int8 rows,
bfloat16, or the model's own float32, each with its CPU matmul."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The int4 and int8 kernels stream 2-4x fewer weight bytes than bfloat16 but dequantize per row:
# beyond about this many rows (a prompt's prefill, a big batch) a bfloat16 copy is faster. Measured
# on 2 cores over the embedded model's 30 layers (runs: ms per step, packed / bfloat16): int4
# blocks 16.7 / 20.7 at 12 rows, 21.8 / 22.7 at 16, 27.6 / 25.6 at 20; the int8 vocabulary head
# 2.9 / 3.7 at 4 rows, 5.7 / 4.3 at 8.
PACKED_MAX_ROWS = {"int4": 16, "int8": 6}
GROUP = 32  # the GGUF Q4_1 block: 32 input weights share a scale and a minimum


def _int4_pack(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Affine 4-bit codes per block of 32 inputs (w = q * d + m, q in 0..15), packed for
    `aten._weight_int4pack_mm_for_cpu` (which computes (q - 8) * scale + zero)."""
    n, k = w.shape
    blocks = w.reshape(n, k // GROUP, GROUP)
    lo, hi = blocks.amin(-1), blocks.amax(-1)
    d = ((hi - lo) / 15).clamp_min(1e-12)
    q = ((blocks - lo[..., None]) / d[..., None]).round().clamp(0, 15).to(torch.int32).reshape(n, k)
    scale_zero = torch.stack([d, lo + 8 * d], dim=-1).transpose(0, 1).contiguous()
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1), scale_zero


def int4_error(w: torch.Tensor) -> float:
    """Largest relative error of `w` stored as 4-bit blocks: ~0 for weights that came from a
    Q4_1 GGUF (the embedded default), large for full-precision checkpoints."""
    n, k = w.shape
    if k % GROUP:
        return float("inf")
    blocks = w.detach().float().reshape(n, k // GROUP, GROUP)
    lo, hi = blocks.amin(-1, keepdim=True), blocks.amax(-1, keepdim=True)
    d = ((hi - lo) / 15).clamp_min(1e-12)
    back = ((blocks - lo) / d).round() * d + lo
    return float((back - blocks).abs().max() / blocks.abs().max().clamp_min(1e-12))


def resolve_precision(model, precision: str) -> str:
    """"auto" is int4 when the weights are 4-bit blocks already (a model converted from a Q4_1
    GGUF, like the embedded default: the codes are then exact), else bfloat16."""
    if precision != "auto":
        return precision
    probe = [model.model.layers[0].self_attn.q_proj.weight, model.model.layers[-1].mlp.down_proj.weight]
    return "int4" if max(int4_error(w) for w in probe) < 1e-5 else "bfloat16"


class Linear:
    """One packed weight matrix (out, in) and its matmul for float32 inputs."""

    def __init__(self, weight: torch.Tensor, precision: str):
        w = weight.detach().float()
        self.precision = precision
        if precision == "int4":
            self.w, sz = _int4_pack(w)
            self.scale_zero = sz.to(torch.bfloat16)
        elif precision == "int8":
            scale = w.abs().amax(dim=1).clamp_min(1e-8) / 127.0
            self.w = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
            self.scale = scale.to(torch.bfloat16)
        elif precision == "bfloat16":
            self.w = w.to(torch.bfloat16).contiguous()
        else:
            self.w = weight.detach()
        if precision in ("int4", "int8"):
            self.w16 = w.to(torch.bfloat16).contiguous()  # for many rows (prompts, big batches)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if self.precision in ("int4", "int8") and flat.shape[0] > PACKED_MAX_ROWS[self.precision]:
            out = F.linear(flat.to(torch.bfloat16), self.w16)
        elif self.precision == "int4":
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat.to(torch.bfloat16), self.w, GROUP, self.scale_zero)
        elif self.precision == "int8":
            out = torch.ops.aten._weight_int8pack_mm(flat.to(torch.bfloat16), self.w, self.scale)
        elif self.precision == "bfloat16":
            out = F.linear(flat.to(torch.bfloat16), self.w)
        else:
            out = F.linear(flat, self.w)
        return out.float().reshape(*shape[:-1], -1)


