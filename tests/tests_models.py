"""Models the distributed tests ship to workers (importable there)."""

from __future__ import annotations


class CountingModel:
    """Identity that counts, per process, how often it was unpickled."""

    unpickled = 0

    def __init__(self) -> None:
        self.weights = list(range(1000))  # some state to ship

    def __call__(self, batch):
        return batch

    def __setstate__(self, state):
        type(self).unpickled += 1
        self.__dict__.update(state)
