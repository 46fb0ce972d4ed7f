"""The visual input module of DMN+ (Xiong, Merity & Socher 2016, Sec. 3.2): image regions -> facts, for the
same episodic memory and answer modules as text.

The paper takes the 14x14 feature map of a pretrained VGG-19; here a small CNN trained from scratch, end to
end, reads each region (a cell of a grid over the image, dmn/data/images.py), which is what SHAPES' 3x3 grid
of shapes calls for. Dimension letters: B batch, R regions (in snake order), C channels, h x w pixels of a
region, F CNN features, H hidden size.
"""

from __future__ import annotations

import torch
from torch import nn

from dmn.models.dmn_plus import input_fusion


class VisualInput(nn.Module):
    """Regions (B, R, C, h, w) uint8 -> facts (B, R, H): a CNN feature vector per region, projected into the
    question's space with a tanh, then the input fusion of the text module over the regions in snake order."""

    def __init__(self, hidden_size: int, dropout: float, channels: int = 3, features: int = 32):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(channels, features // 2, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(features // 2, features, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(features, features, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),  # a region of any size -> one vector
            nn.Flatten(),
        )
        for layer in self.cnn:
            if isinstance(layer, nn.Conv2d):  # He initialisation: torch's default shrinks ReLU features per layer
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        # v~ = tanh(W v + b): the region's features in the space of the question (Sec. 3.2)
        self.project = nn.Linear(features, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.fusion_forward = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.fusion_backward = nn.GRU(hidden_size, hidden_size, batch_first=True)

    def forward(self, story: torch.Tensor, word_mask: torch.Tensor, fact_mask: torch.Tensor) -> torch.Tensor:
        """`story` holds the regions' pixels; `word_mask` is not read (a region has no words)."""
        batch, regions = story.shape[:2]
        pixels = story.flatten(0, 1).float() / 255.0  # (B*R, C, h, w) in [0, 1]
        features = self.cnn(pixels).view(batch, regions, -1)  # (B, R, F)
        facts = torch.tanh(self.project(features))  # (B, R, H)
        return input_fusion(self.fusion_forward, self.fusion_backward, self.dropout(facts), fact_mask)
