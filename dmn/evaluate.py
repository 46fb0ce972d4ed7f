"""Test-split metrics of a trained DMN: exact-match accuracy, error, and how often the memory's highest gate
in some pass falls on a supporting fact (where the data marks supporting facts)."""

from __future__ import annotations

import torch

from dmn.data.batching import Examples, make_batch
from dmn.train import exact_match


@torch.no_grad()
def predict(model, data: Examples, batch_size: int = 256, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Answer ids (N, T) (a sequence decoded greedily) and gates (N, P, S) for every example, in order (no
    example dropped)."""
    model.eval()
    answers, gates = [], []
    for start in range(0, len(data), batch_size):
        batch = make_batch(data.select(torch.arange(start, min(start + batch_size, len(data)))), device)
        output = model(*batch.model_inputs())  # logits (B, T, A), gates (B, P, S_batch)
        answers.append(output.logits.argmax(-1).cpu())
        padded = output.gates.new_zeros(*output.gates.shape[:2], data.story.size(1))  # (B, P, S)
        padded[..., : output.gates.size(-1)] = output.gates
        gates.append(padded.cpu())
    return torch.cat(answers), torch.cat(gates)


def supporting_fact_hits(gates: torch.Tensor, supporting: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the highest gate of at least one pass is on a supporting fact.

    gates (N, P, S); supporting (N, K) fact indices, -1 = none.
    """
    top = gates.argmax(-1)  # (N, P)
    hit = (top.unsqueeze(-1) == supporting.unsqueeze(1)) & (supporting.unsqueeze(1) >= 0)  # (N, P, K)
    return hit.any(-1).any(-1)  # (N,)


def evaluate(model, data: Examples, device="cpu") -> dict:
    """Metrics of `model` on `data`."""
    answers, gates = predict(model, data, device=device)
    accuracy = float(exact_match(answers, data.target).float().mean())
    has_support = (data.supporting >= 0).any(-1)  # (N,)
    hits = supporting_fact_hits(gates, data.supporting)[has_support]
    return {
        "examples": len(data),
        "accuracy": accuracy,
        "error": 1.0 - accuracy,
        "support_hit_rate": float(hits.float().mean()) if hits.numel() else None,
    }
