"""Fast CPU decoding for Llama-family models: our own forward pass over packed weights.

`transformers.generate` spends about 60% of a decode step on framework work (cache objects,
masks, logits processors) for a 135M model. This module runs the same arithmetic with a
preallocated KV cache and fused projections, with the weights packed for the CPU:

- "int8": int8 weights with one scale per output channel (`aten._weight_int8pack_mm`, the
  kernel torchao uses on CPU), matmul inputs in bfloat16. Default: ~4x fewer weight bytes per token.
- "bfloat16": bfloat16 weights and matmul inputs.
- "float32": the model's own weights; exactly the reference arithmetic (used by the tests).

The residual stream, norms, attention and logits stay in float32. Steering adds one vector per
row to the output of decoder layer `layer` at every position, exactly as the engine's hook does.
The reference path (transformers `generate` with hooks) stays for everything that needs
gradients or non-Llama models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .flight import DecodeSettings, Flight
from .kvpool import KVPool
from .packed import Linear, resolve_precision

PRECISIONS = ("auto", "int4", "bfloat16", "float32")
RESCORE = 32  # candidates whose logits are recomputed exactly at each step (low-precision paths)


def supports(model) -> bool:
    """Whether `model` is a Llama-style decoder this module reproduces exactly."""
    cfg = model.config
    return (
        getattr(cfg, "model_type", "") == "llama"
        and getattr(cfg, "hidden_act", "") == "silu"
        and not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
    )  # any RoPE variant: positions go through the model's own rotary module


@dataclass
class _Layer:
    norm1: torch.Tensor
    qkv: Linear
    o: Linear
    norm2: torch.Tensor
    gate_up: Linear
    down: Linear


@dataclass
class DecodeState:
    """One request's (or one scoring pass's) KV cache and bookkeeping in the fast decoder."""

    keys: list[torch.Tensor]  # per layer (B, kv_heads, capacity, head_dim)
    values: list[torch.Tensor]
    valid: torch.Tensor  # (B, capacity) bool: a real (non-pad) token sits at this position
    length: int = 0
    slot: int | None = None  # first row of the shared KVPool the cache lives in (None: its own tensors)

    @property
    def rows(self) -> int:
        return self.valid.shape[0]


@dataclass
class _Group:
    """Rows of neighbouring flights in one decode step: one attention call over their pool slots."""

    rows: slice  # the step's rows
    parts: list  # (state, rows, start, end, mask) per flight
    slots: slice | None = None  # pool slots (merged groups only), attending to positions :end
    end: int = 0
    mask: torch.Tensor | None = None  # (R, 1, 1, end)
    slot_idx: torch.Tensor | None = None  # (R,) where each row writes its new key and value
    pos_idx: torch.Tensor | None = None


class FastDecoder:
    """A Llama model's forward pass over packed weights, for generation only (no gradients)."""

    def __init__(self, model, precision: str = "auto"):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown decode precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not supports(model):
            raise ValueError(f"fast decoding supports Llama-style models, not {model.config.model_type!r}")
        cfg = model.config
        self.precision = precision = resolve_precision(model, precision)
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.eps = cfg.rms_norm_eps
        self.rotary = model.model.rotary_emb
        self.embed = model.model.embed_tokens.weight.detach()
        self.final_norm = model.model.norm.weight.detach().float()
        # Low-precision paths score the vocabulary with int8 rows, then recompute the best
        # RESCORE candidates exactly from the fp32 rows: the head's error never picks a token.
        self.head_exact = model.lm_head.weight.detach().float()  # the same tensor for an fp32 model
        self.lm_head = Linear(self.head_exact, "float32" if precision == "float32" else "int8")
        self.layers = [self._pack(layer, precision) for layer in model.model.layers]
        self.pool = KVPool(len(self.layers), self.kv_heads, self.head_dim)

    @staticmethod
    def _pack(layer, precision: str) -> _Layer:
        att, mlp = layer.self_attn, layer.mlp
        qkv = torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]).detach()
        gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach()
        return _Layer(
            layer.input_layernorm.weight.detach().float(),
            Linear(qkv, precision),
            Linear(att.o_proj.weight, precision),
            layer.post_attention_layernorm.weight.detach().float(),
            Linear(gate_up, precision),
            Linear(mlp.down_proj.weight, precision),
        )

    # ------------------------------------------------------------------ forward

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, weight.shape, weight, self.eps)

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.rotary(self.embed[:1].float(), positions)
        return cos[:, None].float(), sin[:, None].float()  # (B, 1, T, head_dim)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def new_state(self, batch: int, capacity: int, pooled: bool = False) -> DecodeState:
        """An empty cache: rows of the shared pool when `pooled` and they fit, else its own."""
        valid = torch.zeros(batch, capacity, dtype=torch.bool)
        first = self.pool.take(batch, capacity) if pooled else None
        if first is None:
            shape = (batch, self.kv_heads, capacity, self.head_dim)
            return DecodeState([torch.zeros(shape) for _ in self.layers], [torch.zeros(shape) for _ in self.layers], valid)
        state = DecodeState([], [], valid, slot=first)
        state.keys, state.values = self.pool.views(state, first, batch, capacity)
        return state

    def _mask(self, state: DecodeState, start: int, end: int) -> torch.Tensor:
        """(B, 1, T, end) bool: causal, real keys only; a pad query sees itself so no row is empty."""
        q = torch.arange(start, end)[:, None]
        k = torch.arange(end)[None, :]
        mask = (k <= q)[None] & state.valid[:, None, :end]
        mask |= (k == q)[None]
        return mask[:, None]

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, state: DecodeState, steer: torch.Tensor | None, layer: int) -> torch.Tensor:
        """Run `ids` (B, T) at cache slots state.length.. ; returns the last position's final hidden state (B, d)."""
        return self._norm(self._blocks(ids, positions, [state], steer, layer)[:, -1], self.final_norm)

    @torch.no_grad()
    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final (normed) hidden states (B, T, d) of right-padded, unsteered rows in one pass: for
        scoring text (the judge's perplexities). Multiply by `head_exact` for exact fp32 logits."""
        b, t = input_ids.shape
        state = self.new_state(b, t)
        state.valid[:, :t] = attention_mask.bool()
        positions = torch.arange(t)[None].expand(b, t)
        return self._norm(self._blocks(input_ids, positions, [state], None, -1), self.final_norm)

    @torch.no_grad()
    def continuation_hidden_states(self, prefix: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final (normed) hidden states (B, 1 + T, d) of right-padded rows `input_ids` (B, T) that
        all continue one `prefix` (1, P), unsteered, the prefix run once for every row (the judge's
        perplexities; multiply by `head_exact` for exact fp32 logits): position 0 is the
        prefix's last (it predicts each row's first token), then the rows' own positions."""
        p, (b, t) = prefix.shape[1], input_ids.shape
        shared = self.new_state(1, p)
        shared.valid[:, :p] = True
        last = self._blocks(prefix, torch.arange(p)[None], [shared], None, -1)[:, -1:]
        pad = torch.zeros(b, self.kv_heads, t, self.head_dim)
        state = DecodeState(
            [torch.cat([k.expand(b, -1, -1, -1), pad], dim=2) for k in shared.keys],
            [torch.cat([v.expand(b, -1, -1, -1), pad], dim=2) for v in shared.values],
            torch.cat([torch.ones(b, p, dtype=torch.bool), attention_mask.bool()], dim=1),
            length=p,
        )
        rows = self._blocks(input_ids, (p + torch.arange(t))[None].expand(b, t), [state], None, -1)
        return self._norm(torch.cat([last.expand(b, 1, -1), rows], dim=1), self.final_norm)

    def _blocks(self, ids: torch.Tensor, positions: torch.Tensor, states: list[DecodeState], steer: torch.Tensor | None, layer: int) -> torch.Tensor:
        """The decoder blocks over `ids` (B, T); the residual stream (B, T, d). The rows are the
        rows of `states` in order, each state with its own KV cache (requests decoding together):
        the projections run over every row at once, attention per group of flights whose caches
        are neighbouring rows of the shared pool (`_groups`), else per flight."""
        t = ids.shape[1]
        cos, sin = self._rope(positions)
        groups = self._groups(states, t)
        x = self.embed[ids].float()
        for i, lay in enumerate(self.layers):
            x = x + self._attention(lay, i, self._norm(x, lay.norm1), groups, cos, sin)
            gate, up = lay.gate_up(self._norm(x, lay.norm2)).chunk(2, dim=-1)
            x = x + lay.down(F.silu(gate) * up)
            if steer is not None and i == layer:
                x = x + (steer if steer.dim() == 3 else steer[:, None, :])  # (B, T, d): per position
        for st in states:
            st.length += t
        return x

    def _groups(self, states: list[DecodeState], t: int) -> list[_Group]:
        """Consecutive flights in one-token steps whose caches are neighbouring pool slots attend
        together: their masks padded to the longest and stacked, their writes as one index."""
        groups: list[_Group] = []
        first = 0
        for st in states:
            part = (st, slice(first, first + st.rows), st.length, st.length + t, self._mask(st, st.length, st.length + t))
            last = groups[-1] if groups else None
            prev = last.parts[-1][0] if last else None
            if t == 1 and prev is not None and prev.slot is not None and st.slot == prev.slot + prev.rows:
                last.parts.append(part)
                last.rows = slice(last.rows.start, part[1].stop)
            else:
                groups.append(_Group(part[1], [part]))
            first += st.rows
        for g in groups:
            if len(g.parts) > 1:
                g.end = max(p[3] for p in g.parts)
                g.slots = slice(g.parts[0][0].slot, g.parts[0][0].slot + g.rows.stop - g.rows.start)
                g.mask = torch.cat([F.pad(p[4], (0, g.end - p[3])) for p in g.parts])
                g.slot_idx = torch.arange(g.slots.start, g.slots.stop)
                g.pos_idx = torch.cat([torch.full((p[0].rows,), p[2]) for p in g.parts])
        return groups

    def logits(self, h: torch.Tensor, settings: DecodeSettings, seen: torch.Tensor) -> torch.Tensor:
        """(B, V) logits of final hidden states `h` (B, d); on low-precision paths exact for the
        RESCORE tokens that score best after the repetition penalty, approximate elsewhere."""
        return self._rescore(h, self.lm_head(h), settings, seen)

    def _rescore(self, h: torch.Tensor, approx: torch.Tensor, settings: DecodeSettings, seen: torch.Tensor) -> torch.Tensor:
        if self.lm_head.precision == "float32":
            return approx
        cand = settings.penalise(approx, seen).topk(RESCORE, dim=-1).indices  # (B, K)
        exact = torch.einsum("bd,bkd->bk", h, self.head_exact[cand])
        return approx.scatter_(1, cand, exact)  # in place: `approx` is this step's own (B, V)

    def _attention(self, lay: _Layer, i: int, h, groups: list[_Group], cos, sin):
        b, t, _ = h.shape
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        qk, v = lay.qkv(h).split([q_size + kv_size, kv_size], dim=-1)
        qk = self._rotate(qk.reshape(b, t, self.heads + self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        q, k = qk[:, : self.heads], qk[:, self.heads :]  # one rotation for queries and keys
        v = v.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        outs = []
        for g in groups:
            if g.slots is not None:  # neighbouring pool slots: one write and one attention
                keys, values = self.pool.keys[i], self.pool.values[i]
                keys[g.slot_idx, :, g.pos_idx] = k[g.rows, :, 0]
                values[g.slot_idx, :, g.pos_idx] = v[g.rows, :, 0]
                outs.append(F.scaled_dot_product_attention(
                    q[g.rows], keys[g.slots, :, : g.end], values[g.slots, :, : g.end], attn_mask=g.mask, enable_gqa=True
                ))
                continue
            state, rows, start, end, mask = g.parts[0]
            state.keys[i][:, :, start:end] = k[rows]
            state.values[i][:, :, start:end] = v[rows]
            outs.append(F.scaled_dot_product_attention(q[rows], state.keys[i][:, :, :end], state.values[i][:, :, :end], attn_mask=mask, enable_gqa=True))
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return lay.o(out.transpose(1, 2).reshape(b, t, q_size))

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def start(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, settings: DecodeSettings, on_step: Callable[[torch.Tensor], None] | None = None) -> Flight:
        """A request's rows in flight: its prompt run (prefill) and its first token chosen; move
        it on with `step` until `done` (mirrors transformers' greedy/sampling loop)."""
        flight = Flight(self, input_ids, attention_mask, settings, on_step)
        if flight.done:  # max_new_tokens = 0: nothing to write
            return flight
        h = self.forward(input_ids, flight.positions, flight.state, flight.prompt_steer(input_ids.shape[1], self.embed.shape[1]), settings.layer)
        flight.advance(self.logits(h, settings, flight.seen))
        return flight

    @torch.no_grad()
    def step(self, flights: list[Flight]) -> None:
        """One more token for every flight (none of them done) in one pass over the weights: the
        rows of requests that arrived at different times decode together (continuous batching).
        Flights go in pool-slot order, so that neighbours attend together."""
        flights = sorted(flights, key=lambda f: (f.state.slot is None, f.state.slot or 0))
        ids = torch.cat([f.pending for f in flights])
        positions = torch.cat([f.positions for f in flights])
        d = self.embed.shape[1]
        steers = [f.steer_now(d) for f in flights]
        steer = None
        if any(v is not None for v in steers):
            steer = torch.cat([v if v is not None else torch.zeros(f.rows, d) for v, f in zip(steers, flights)])
        layer = next((f.settings.layer for f, v in zip(flights, steers) if v is not None), -1)
        h = self._norm(self._blocks(ids, positions, [f.state for f in flights], steer, layer)[:, -1], self.final_norm)
        approx, first = self.lm_head(h), 0
        for f in flights:
            rows = slice(first, first + f.rows)
            f.advance(self._rescore(h[rows], approx[rows], f.settings, f.seen))
            first += f.rows
