"""DMN+ model: the paper's formulas, shapes, and masks that make a story's answer independent of its batch."""

import torch

from dmn.config import ModelConfig
from dmn.data.batching import encode_stories, make_batch
from dmn.data.vocab import Vocabulary, tokenize
from dmn.model import DMNPlus, positional_encoding

STORIES = [
    (["Mary went to the kitchen.", "John moved to the garden."], "Where is Mary?"),
    (
        [
            "Sandra journeyed to the office.",
            "Mary went to the hallway.",
            "John travelled to the bathroom.",
            "Daniel went back to the bedroom.",
            "Sandra moved to the garden and then to the kitchen.",
        ],
        "Where is Sandra?",
    ),
    (["Daniel went to the office."], "Where is Daniel now?"),
]


def _rows():
    return [
        {"story_tokens": [tokenize(s) for s in story], "question_tokens": tokenize(q), "answer": "kitchen"}
        for story, q in STORIES
    ]


def _vocab():
    rows = _rows()
    words = [s for r in rows for s in r["story_tokens"]] + [r["question_tokens"] for r in rows]
    return Vocabulary.build(words, ["kitchen", "garden", "office"])


def test_positional_encoding_follows_the_paper_with_the_sentence_own_length():
    torch.manual_seed(0)
    words = torch.randn(1, 1, 5, 4)  # one sentence of M = 3 words padded to width 5, D = 4
    word_mask = torch.tensor([[[True, True, True, False, False]]])
    encoded = positional_encoding(words, word_mask)  # (1, 1, 4)
    m, dim = 3, 4
    for d in range(1, dim + 1):
        expected = sum(((1 - j / m) - (d / dim) * (1 - 2 * j / m)) * words[0, 0, j - 1, d - 1] for j in range(1, m + 1))
        assert abs(encoded[0, 0, d - 1].item() - expected.item()) < 1e-5  # padded words weigh nothing


def test_shapes_and_gates_are_distributions_over_real_facts_only():
    vocab = _vocab()
    model = DMNPlus(ModelConfig(hidden_size=16, passes=3), len(vocab.words), len(vocab.answers)).eval()
    batch = make_batch(encode_stories(_rows(), vocab, 70))
    logits, gates = model(*batch.model_inputs())
    assert logits.shape == (3, 3)
    assert gates.shape == (3, 3, 5)  # (B, P, S)
    assert torch.allclose(gates.sum(-1), torch.ones(3, 3))
    assert (gates[0, :, 2:] == 0).all() and (gates[2, :, 1:] == 0).all()  # padded facts get exactly 0


def test_a_story_gets_the_same_answer_and_gates_alone_or_in_a_padded_batch():
    torch.manual_seed(0)
    vocab = _vocab()
    model = DMNPlus(ModelConfig(hidden_size=24, passes=3), len(vocab.words), len(vocab.answers)).eval()
    data = encode_stories(_rows(), vocab, 70)
    batched_logits, batched_gates = model(*make_batch(data).model_inputs())
    for i in range(len(STORIES)):
        alone = make_batch(data.select(torch.tensor([i])))  # trimmed to this story's own sizes
        logits, gates = model(*alone.model_inputs())
        n_facts = gates.size(-1)
        assert torch.allclose(logits[0], batched_logits[i], atol=1e-5)
        assert torch.allclose(gates[0], batched_gates[i, :, :n_facts], atol=1e-6)
        assert logits[0].argmax() == batched_logits[i].argmax()


def test_story_cut_keeps_the_last_sentences_and_shifts_supporting_facts():
    rows = [
        {"story_tokens": [["a"], ["b"], ["c"], ["d"]], "question_tokens": ["q"], "answer": "x", "supporting": [0, 3]}
    ]
    vocab = Vocabulary.build([["a", "b", "c", "d", "q"]], ["x"])
    data = encode_stories(rows, vocab, sentence_limit=2)
    assert data.story[0, :, 0].tolist() == vocab.word_ids(["c", "d"])
    assert data.supporting[0].tolist() == [1]  # fact 0 was cut away; fact 3 is now fact 1
