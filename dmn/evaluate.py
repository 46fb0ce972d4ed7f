"""Test-split metrics of a trained DMN+: accuracy, error, failed (error > 5 %), and how often the memory's
highest gate in some pass falls on a supporting fact."""

from __future__ import annotations

import torch

from dmn.data.batching import EncodedStories, make_batch

FAILED_ERROR = 0.05  # bAbI convention: a task is failed when its test error exceeds 5 %


@torch.no_grad()
def predict(model, data: EncodedStories, batch_size: int = 256, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Answer ids (N,) and gates (N, P, S) for every example, in order (no example dropped)."""
    model.eval()
    answers, gates = [], []
    for start in range(0, len(data), batch_size):
        batch = make_batch(data.select(torch.arange(start, min(start + batch_size, len(data)))), device)
        logits, batch_gates = model(*batch.model_inputs())  # (B, A), (B, P, S_batch)
        answers.append(logits.argmax(-1).cpu())
        padded = batch_gates.new_zeros(*batch_gates.shape[:2], data.story.size(1))  # (B, P, S)
        padded[..., : batch_gates.size(-1)] = batch_gates
        gates.append(padded.cpu())
    return torch.cat(answers), torch.cat(gates)


def supporting_fact_hits(gates: torch.Tensor, supporting: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the highest gate of at least one pass is on a supporting fact.

    gates (N, P, S); supporting (N, K) fact indices, -1 = none.
    """
    top = gates.argmax(-1)  # (N, P)
    hit = (top.unsqueeze(-1) == supporting.unsqueeze(1)) & (supporting.unsqueeze(1) >= 0)  # (N, P, K)
    return hit.any(-1).any(-1)  # (N,)


def evaluate(model, data: EncodedStories, device="cpu") -> dict:
    """Metrics of `model` on `data`."""
    answers, gates = predict(model, data, device=device)
    accuracy = float((answers == data.answer).float().mean())
    has_support = (data.supporting >= 0).any(-1)  # (N,)
    hits = supporting_fact_hits(gates, data.supporting)[has_support]
    return {
        "examples": len(data),
        "accuracy": accuracy,
        "error": 1.0 - accuracy,
        "failed": (1.0 - accuracy) > FAILED_ERROR,
        "support_hit_rate": float(hits.float().mean()) if hits.numel() else None,
    }
