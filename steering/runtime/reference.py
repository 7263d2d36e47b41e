"""The reference decode path's pieces: transformers `generate` with a steering hook, a stop
criterion on a cancel event, and the streamer that hands each step's tokens to a queue."""

from __future__ import annotations

import queue
import threading

import torch
from transformers import StoppingCriteriaList


class SteeringHook:
    """Adds per-row vectors to a layer's output, but only for forwards run by its owner thread.

    A module's hooks are shared by every thread using the model; the owner check is what keeps
    two concurrent requests from steering each other.
    """

    def __init__(self, vectors: torch.Tensor, openings: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.vectors = vectors
        self.openings = openings  # (B, d) opening vectors and (B,) answer tokens they steer
        self.calls = 0  # forwards so far: the prompt run, then one per answer token
        self.owner = threading.get_ident()

    def __call__(self, _module, _inputs, output):
        if threading.get_ident() != self.owner:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        vec = self.vectors.to(hidden.dtype)
        if vec.shape[0] != hidden.shape[0]:
            raise RuntimeError(f"steering batch {vec.shape[0]} != model batch {hidden.shape[0]}")
        hidden = hidden + vec[:, None, :]  # every position: prompt and each generated token
        if self.openings is not None:  # the prompt's last position, then the opening's tokens
            opening, tokens = self.openings
            writing = (tokens >= self.calls).to(hidden.dtype)[:, None] if self.calls else 1.0
            hidden = hidden.clone()
            hidden[:, -1] += (writing * opening).to(hidden.dtype)
        self.calls += 1
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class StopOnEvent:
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class QueueStreamer:
    """transformers streamer protocol: `put` gets the prompt once, then (B,) new tokens per step."""

    def __init__(self):
        self.q: queue.Queue = queue.Queue()
        self._seen_prompt = False

    def put(self, value):
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self.q.put(value.reshape(-1).tolist())

    def end(self):
        self.q.put(None)

    def drained(self):
        """Lists of the steps waiting (at least one each) until the end: a slow consumer gets the
        steps it missed at once instead of one update per token."""
        while (item := self.q.get()) is not None:
            items = [item]
            while True:
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    yield items
                    return
                items.append(item)
            yield items


def generate_kwargs(tokenizer, config, cancel: threading.Event | None) -> dict:
    """transformers `generate` keyword arguments for a GenerationConfig."""
    kwargs = dict(
        max_new_tokens=config.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        repetition_penalty=config.repetition_penalty,
    )
    if config.min_new_tokens:
        kwargs["min_new_tokens"] = config.min_new_tokens
    if config.temperature > 0:
        kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if config.return_logits:
        kwargs.update(output_logits=True, return_dict_in_generate=True)
    if cancel is not None:
        kwargs["stopping_criteria"] = StoppingCriteriaList([StopOnEvent(cancel)])
    return kwargs

