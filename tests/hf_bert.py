"""A user's Hugging Face ``transformers`` encoder: a BERT built from its config (nothing downloaded),
reading the zoo transformer's 2x2 digit patches through a linear embedding (``inputs_embeds``)."""

from __future__ import annotations

from torch import nn
from transformers import BertConfig, BertModel

from infersearch.models import Task
from infersearch.models.data import split_arrays, to_splits
from infersearch.models.digits_transformer import PATCH, TOKENS, load_patches
from infersearch.models.task import ACCURACY, TrainRecipe


class DigitsBert(nn.Module):
    def __init__(self, hidden: int, heads: int, layers: int, intermediate: int) -> None:
        super().__init__()
        config = BertConfig(
            vocab_size=2,  # unused: the inputs arrive as embeddings
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=intermediate,
            max_position_embeddings=TOKENS,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.embed = nn.Linear(PATCH * PATCH, hidden)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.classifier(self.bert(inputs_embeds=self.embed(x)).last_hidden_state.mean(dim=1))


def task(hidden: int = 32, heads: int = 4, layers: int = 1, intermediate: int = 64, epochs: int = 15, seed: int = 0):
    x, y = load_patches()
    return Task(
        name="digits_bert",
        build=lambda: DigitsBert(hidden, heads, layers, intermediate),
        splits=to_splits(split_arrays(x, y, seed)),
        loss=nn.functional.cross_entropy,
        metric=ACCURACY,
        recipe=TrainRecipe(epochs=epochs, lr=3e-3, batch_size=64),
        spec={"user": "digits_bert", "hidden": hidden, "heads": heads, "layers": layers, "seed": seed},
    )
