"""Batched generation with a per-row steering vector added to one layer's residual stream.

Each batch row carries its own feature weights, so steered and unsteered answers (or K candidate
weight vectors) come out of one `generate` call. Hooks live only for the call that made them.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .basis import SteeringBasis, Weights
from .continuous import ContinuousScheduler, EngineStepper
from .decode import PRECISIONS, FastDecoder, supports
from .flight import DecodeSettings, Flight
from .models import decoder_layers
from .reference import QueueStreamer, SteeringHook, generate_kwargs
from .scheduler import BACKGROUND, GenerationScheduler, current_priority

log = logging.getLogger(__name__)


@dataclass
class GenerationConfig:
    max_new_tokens: int = 96
    min_new_tokens: int = 0  # >0 suppresses EOS until then (fixed-length benchmarks)
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.95
    seed: int | None = None
    repetition_penalty: float = 1.1
    return_logits: bool = False
    chat: bool = True  # False: each prompt is plain text to continue (no chat template, no system prompt)


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    finish_reason: str  # "eos" | "length" | "cancelled"
    logits: torch.Tensor | None = field(default=None, repr=False)  # (n_new, vocab) when asked


def _per_row(system: str | Sequence[str | None] | None, rows: int) -> list[str | None]:
    """One system prompt per row: a list as given, or one prompt (or None) for every row."""
    systems = list(system) if isinstance(system, (list, tuple)) else [system] * rows
    if len(systems) != rows:
        raise ValueError("one system prompt per prompt, or one for all")
    return systems


class SteeringEngine:
    """A model, its tokenizer and a steering basis; generates with per-row feature weights.

    Example:
        >>> engine = steering.runtime.shared.get_runtime().engine   # the offline default, shared
        >>> steered, plain = engine.generate(["Why is the sky blue?"] * 2, [{123: 0.6}, None])
    """

    def __init__(self, model, tokenizer, basis: SteeringBasis | None, sae=None, decode: str = "reference"):
        self.model = model
        self.tokenizer = tokenizer
        self.basis = basis
        self.sae = sae  # the sae-lens SAE, for reading feature activations (retrieval)
        self.layers = decoder_layers(model)
        self.fast = self._fast_decoder(decode)
        self.scheduler: GenerationScheduler | None = None
        self.decode = self.fast.precision if self.fast is not None else "reference"  # as resolved

    def _fast_decoder(self, decode: str) -> FastDecoder | None:
        """The packed-weight decoder for `decode` ("int8", "bfloat16", "float32"), or None for
        "reference" (transformers `generate` with a hook) and for models it does not cover."""
        if decode == "reference":
            return None
        if decode not in PRECISIONS:
            raise ValueError(f"unknown decode path {decode!r}; choose reference, {', '.join(PRECISIONS)}")
        if not supports(self.model) or self.model.device.type != "cpu":
            log.info("fast decoding does not cover this model/device; using transformers generate")
            return None
        return FastDecoder(self.model, decode)

    # ------------------------------------------------------------------ steering

    def steering_vectors(self, weights: Sequence[Weights | None]) -> torch.Tensor:
        if self.basis is None:
            if any(weights):
                raise ValueError("this engine has no SAE; only unsteered generation is possible")
            return torch.zeros(len(weights), self.model.config.hidden_size)
        return self.basis.vectors(weights)

    def opening_vectors(self, weights: Sequence[Weights | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The rows' opening vectors and lengths (`SteeringBasis.openings`), or None."""
        return self.basis.openings(weights) if self.basis is not None else None

    @contextmanager
    def steering(self, vectors: torch.Tensor, openings: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Add `vectors` (B, d_model) to the basis layer's output for this thread's forwards (and
        the `openings` where answers start: see SteeringHook)."""
        if self.basis is None or (not bool(vectors.abs().sum()) and openings is None):
            yield
            return
        if openings is not None:
            openings = (openings[0].to(self.model.device), openings[1].to(self.model.device))
        handle = self.layers[self.basis.layer].register_forward_hook(SteeringHook(vectors.to(self.model.device), openings))
        try:
            yield
        finally:
            handle.remove()

    # ------------------------------------------------------------------ prompts

    def chat_prompt(self, prompt: str, system: str | None = None) -> str:
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)

    def _encode(self, prompts: Sequence[str], system: str | Sequence[str | None] | None, chat: bool = True):
        systems = _per_row(system, len(prompts))
        texts = [self.chat_prompt(p, s) for p, s in zip(prompts, systems)] if chat else list(prompts)
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        prompts: Sequence[str],
        weights: Sequence[Weights | None] | None = None,
        *,
        system: str | Sequence[str | None] | None = None,
        config: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
        _streamer=None,
    ) -> list[Generation]:
        """Answer each prompt (a user message) with its own feature weights, in one batch.

        With a scheduler attached (the shared runtime has one), the request queues to its worker
        at the caller's `scheduler.priority` and may share a batch with other callers' rows."""
        config = config or GenerationConfig()
        if not prompts:
            return []
        weights = list(weights) if weights is not None else [None] * len(prompts)
        if len(weights) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(weights)} weight rows")
        systems = _per_row(system, len(prompts))
        self.steering_vectors(weights)  # fail here, in the caller's thread, on bad weights
        self.opening_vectors(weights)  # and on a bad opening
        if self.scheduler is not None and not self.scheduler.on_worker():
            # Big requests (screening 30 candidates) go in chunks, so a child's question can be
            # decoded between two chunks instead of after all of them.
            step = len(prompts) if _streamer is not None else self.scheduler.max_rows
            futures = [self.scheduler.submit(prompts[i : i + step], weights[i : i + step], systems[i : i + step], config, cancel, _streamer)
                       for i in range(0, len(prompts), step)]
            out = [g for f in futures for g in f.result()]
            if current_priority() == BACKGROUND:  # what follows (judging, gradients) waits for the kids
                self.scheduler.wait_quiet(BACKGROUND)
            return out
        return self._generate_now(list(prompts), weights, systems, config, cancel, _streamer)

    def start_scheduler(self, max_rows: int = 16) -> GenerationScheduler:
        """Route every later `generate`/`stream` through one worker thread (see scheduler.py)."""
        if self.scheduler is None:
            if self.fast is not None:  # token by token: requests join and leave between steps
                self.scheduler = ContinuousScheduler(EngineStepper(self), max_rows=max_rows)
            else:
                self.scheduler = GenerationScheduler(self._generate_now, max_rows=max_rows)
        return self.scheduler

    def _generate_now(self, prompts: list[str], weights: list, systems: list, config: GenerationConfig, cancel, streamer) -> list[Generation]:
        if self.fast is not None:
            flight = self._begin(prompts, weights, systems, config, cancel, streamer)
            while not flight.done:
                self.fast.step([flight])
            return self._end(flight, cancel, streamer)
        vectors = self.steering_vectors(weights)
        enc = self._encode(prompts, systems, config.chat)
        if config.seed is not None:
            torch.manual_seed(config.seed)
        kwargs = generate_kwargs(self.tokenizer, config, cancel)
        with torch.no_grad(), self.steering(vectors, self.opening_vectors(weights)):
            out = self.model.generate(**enc, streamer=streamer, **kwargs)
        sequences = out.sequences if config.return_logits else out
        logits = torch.stack(out.logits, dim=1) if config.return_logits else None
        new = sequences[:, enc["input_ids"].shape[1] :]
        cancelled = cancel is not None and cancel.is_set()
        return [self._finish(new[i], logits[i] if logits is not None else None, cancelled) for i in range(len(new))]

    def _begin(self, prompts: list[str], weights: list, systems: list, config: GenerationConfig, cancel, streamer) -> Flight:
        """Start a request on the fast decoder: its prompt run and first token (see flight.py)."""
        vectors = self.steering_vectors(weights)
        openings = self.opening_vectors(weights)
        enc = self._encode(prompts, systems, config.chat)
        sampled = config.seed is not None and config.temperature > 0
        settings = DecodeSettings(
            max_new_tokens=config.max_new_tokens,
            eos_id=self.tokenizer.eos_token_id,
            pad_id=self.tokenizer.pad_token_id,
            steer=vectors if self.basis is not None and bool(vectors.abs().sum()) else None,
            opening=openings[0] if openings is not None else None,
            opening_tokens=openings[1] if openings is not None else None,
            layer=self.basis.layer if self.basis is not None else -1,
            min_new_tokens=config.min_new_tokens,
            repetition_penalty=config.repetition_penalty,
            temperature=config.temperature,
            top_p=config.top_p,
            generator=torch.Generator().manual_seed(config.seed) if sampled else None,  # per request
            cancel=cancel,
            return_logits=config.return_logits,
        )
        if streamer is not None:
            streamer.put(enc["input_ids"])  # the transformers streamer protocol: the prompt first
        try:
            return self.fast.start(enc["input_ids"], enc["attention_mask"], settings, streamer.put if streamer is not None else None)
        except BaseException:
            if streamer is not None:
                streamer.end()
            raise

    def _end(self, flight: Flight, cancel, streamer) -> list[Generation]:
        if streamer is not None:
            streamer.end()
        out = flight.result()
        cancelled = cancel is not None and cancel.is_set()
        logits = out.logits
        return [self._finish(out.tokens[i], logits[i] if logits is not None else None, cancelled) for i in range(len(out.tokens))]

    def _finish(self, ids: torch.Tensor, logits, cancelled: bool) -> Generation:
        ids_list = ids.tolist()
        eos = self.tokenizer.eos_token_id
        reason = "cancelled" if cancelled else "length"
        if eos in ids_list:
            ids_list = ids_list[: ids_list.index(eos)]
            reason = "eos"
        if logits is not None:
            logits = logits[: len(ids_list)]
        return Generation(self.text_of(ids_list), ids_list, reason, logits)

    def text_of(self, ids: Sequence[int]) -> str:
        """Token ids as text. A character whose bytes span several tokens shows as U+FFFD until
        all of them are there: one cut off by the token limit (or not yet streamed) is dropped."""
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip().rstrip("\ufffd").rstrip()

    def stream(
        self,
        prompts: Sequence[str],
        weights: Sequence[Weights | None] | None = None,
        *,
        system: str | Sequence[str | None] | None = None,
        config: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[list[str]]:
        """Yield every row's text so far after each new token; the last item is the final text.

        Closing the iterator early (or setting `cancel`) stops generation at the next token.
        """
        cancel = cancel or threading.Event()
        streamer = QueueStreamer()
        result: dict = {}

        def work():
            try:
                result["out"] = self.generate(prompts, weights, system=system, config=config, cancel=cancel, _streamer=streamer)
            except BaseException as exc:  # re-raised in the consumer's thread
                result["error"] = exc
                streamer.end()

        ctx = contextvars.copy_context()  # the caller's scheduling priority travels with it
        worker = threading.Thread(target=ctx.run, args=(work,), daemon=True, name="steering-generate")
        worker.start()
        ids: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        eos = self.tokenizer.eos_token_id
        try:
            for steps in streamer.drained():  # a slow consumer gets the steps it missed at once
                for step in steps:
                    for i, tok in enumerate(step):
                        if done[i] or tok == eos:
                            done[i] = True
                            continue
                        ids[i].append(tok)
                yield [self.text_of(r) for r in ids]
        finally:
            if worker.is_alive():
                cancel.set()  # the consumer stopped early
            worker.join()
        if "error" in result:
            raise result["error"]
        yield [g.text for g in result["out"]]
