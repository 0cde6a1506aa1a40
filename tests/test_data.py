"""Split reads a Dataset or a DataLoader batch by batch; head and take read only the first batches."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from infersearch.models.task import Split


class Counted(Dataset):
    """Item i is (i, i % 2); it records which items were read."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.read: set[int] = set()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.read.add(i)
        return torch.tensor([float(i)]), torch.tensor(i % 2)


def test_take_and_head_read_only_the_first_batches_of_a_dataloader():
    data = Counted(1000)
    split = Split(DataLoader(data, batch_size=10))
    assert len(split) == 1000
    assert split.take(25).reshape(-1).tolist() == [float(i) for i in range(25)]
    assert data.read == set(range(30))  # three batches of ten
    head = split.head(25)
    assert sum(len(x) for x, _ in head.batches()) == 30  # whole batches, the loader's own size
    assert max(data.read) == 29


def test_a_dataset_is_batched_and_shuffled_reproducibly():
    split = Split(Counted(100))
    assert [len(x) for x, _ in split.batches(32)] == [32, 32, 32, 4]
    first = [x.reshape(-1).tolist() for x, _ in split.batches(50, shuffle=True, seed=3)]
    again = [x.reshape(-1).tolist() for x, _ in split.batches(50, shuffle=True, seed=3)]
    assert first == again and first[0] != [float(i) for i in range(50)]
    assert len(split.head(10)) == 10 and split.take(500).shape == (100, 1)  # take stops at the end
