"""Test-split metrics of a trained DMN: exact-match accuracy, error, and how often the memory's highest gate
in some pass falls on a supporting fact (where the data marks supporting facts)."""

from __future__ import annotations

import torch

from dmn.data.batching import IGNORE, UNKNOWN, Examples, make_batch
from dmn.data.vocab import UNKNOWN_WORD
from dmn.train import exact_match


@torch.no_grad()
def predict(model, data: Examples, batch_size: int = 256, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Answer ids (N, T) (a sequence decoded greedily) and gates (N, P, S) for every example, in order (no
    example dropped). Batches hold examples of similar length (the masks make an answer independent of its
    batch), so that the recurrences step through little padding: bAbI task 3's test stories at batch 100 padded
    to their batch's longest would be 2.65x the real facts."""
    model.eval()
    order = torch.argsort(data.fact_counts(), stable=True)  # (N,)
    answers, gates = [], []
    for start in range(0, len(data), batch_size):
        batch = make_batch(data.select(order[start : start + batch_size]), device)
        output = model(*batch.model_inputs())  # logits (B, T, A), gates (B, P, S_batch)
        answers.append(output.logits.argmax(-1).cpu())
        padded = output.gates.new_zeros(*output.gates.shape[:2], data.story.size(1))  # (B, P, S)
        padded[..., : output.gates.size(-1)] = output.gates
        gates.append(padded.cpu())
    steps = max(a.size(1) for a in answers)  # tags: each batch's own longest sentence
    answers = [torch.nn.functional.pad(a, (0, steps - a.size(1)), value=IGNORE) for a in answers]
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))  # back to the examples' own order
    return torch.cat(answers)[inverse], torch.cat(gates)[inverse]


def supporting_fact_hits(gates: torch.Tensor, supporting: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the highest gate of at least one pass is on a supporting fact.

    gates (N, P, S); supporting (N, K) fact indices, -1 = none.
    """
    top = gates.argmax(-1)  # (N, P)
    hit = (top.unsqueeze(-1) == supporting.unsqueeze(1)) & (supporting.unsqueeze(1) >= 0)  # (N, P, K)
    return hit.any(-1).any(-1)  # (N,)


def confusion_matrix(answers: torch.Tensor, target: torch.Tensor, classes: int) -> torch.Tensor:
    """(classes, classes) counts: row = true class, column = predicted, over the scored positions of `target`
    (N, T) whose class is known; answers (N, T') ids."""
    steps = target.size(1)
    predicted = answers[:, :steps]  # (N, T)
    scored = (target >= 0) & (predicted >= 0)  # IGNORE, UNKNOWN and a missing prediction are not counted
    index = target[scored] * classes + predicted[scored]
    return torch.bincount(index, minlength=classes * classes).view(classes, classes)


def _unknown(data: Examples, per_token: bool) -> dict:
    """What the model's vocabulary lacks in `data`: "input_tokens" (every token its stories and questions hold,
    the tokens an application adds to a word included; questions only for images), how many of them are the
    unknown word, and "unknown_answers", the answers (with `per_token`, the tags) it cannot give, which are scored
    wrong."""
    ids = data.question if data.is_images else torch.cat([data.story.flatten(), data.question.flatten()])
    return {
        "input_tokens": int((ids != 0).sum()),  # 0 pads
        "unknown_input_tokens": int((ids == UNKNOWN_WORD).sum()),
        "unknown_answers": int((data.target == UNKNOWN).sum() if per_token else (data.target == UNKNOWN).any(-1).sum()),
    }


def evaluate(
    model,
    data: Examples,
    device="cpu",
    per_token: bool = False,
    classes: int | None = None,
    groups: list[str] | None = None,
    score=None,
) -> dict:
    """Metrics of `model` on `data`: `accuracy` is the share of examples answered exactly, or with `per_token`
    (tagging) the share of tokens tagged right, then also on the words the vocabulary lacks and per sentence.
    With `classes` (class or tag answers), also the confusion matrix (rows true, columns predicted); with
    `groups` (a name per example: its question type), also the examples and exact accuracy of each group; with
    `score` (answer ids (N, T) -> metrics), also its metrics (visual QA: VQA's accuracy)."""
    answers, gates = predict(model, data, device=device)
    exact = exact_match(answers, data.target).float()  # (N,)
    has_support = (data.supporting >= 0).any(-1)  # (N,)
    hits = supporting_fact_hits(gates, data.supporting)[has_support]
    metrics = {"examples": len(data), "accuracy": float(exact.mean()), **_unknown(data, per_token)}
    if per_token:
        steps = data.target.size(1)
        scored = data.target != IGNORE  # (N, T): the words of each sentence
        right = (answers[:, :steps] == data.target) & scored  # (N, T)
        unknown = (data.story[:, :steps, 0] == UNKNOWN_WORD) & scored  # (N, T): words the vocabulary lacks
        metrics.update(
            accuracy=float(right.sum() / scored.sum()),
            tokens=int(scored.sum()),
            unknown_word_accuracy=float((right & unknown).sum() / unknown.sum()) if unknown.any() else None,
            unknown_words=int(unknown.sum()),
            sentence_accuracy=float(exact.mean()),
        )
    if classes is not None:
        metrics["confusion"] = confusion_matrix(answers, data.target, classes).tolist()
    if groups is not None:
        metrics["by_group"] = {
            name: {"examples": len(members), "accuracy": float(exact[members].mean())}
            for name in sorted(set(groups))
            for members in [torch.tensor([g == name for g in groups])]
        }
    if score is not None:
        metrics.update(score(answers))
    return {
        **metrics,
        "error": 1.0 - metrics["accuracy"],
        "support_hit_rate": float(hits.float().mean()) if hits.numel() else None,
    }
