"""Machine learning helpers: leak-free splits (:mod:`.split`), xbatcher
batches (:mod:`.xbatcher`), the framework-free feed and the PyTorch and
TensorFlow feeds built on it (:mod:`.feed`, :mod:`.torch`,
:mod:`.tensorflow`), and the sampling orders (:mod:`.order`,
:mod:`.balance`, :mod:`.stratify`).

torch and tensorflow are imported only inside :func:`torch_loader` and
:func:`tf_dataset`: importing this package imports neither.
"""

from __future__ import annotations

from .feed import TileFeed, tf_dataset, torch_loader
from .split import split
from .xbatcher import batches

__all__ = ["TileFeed", "batches", "split", "tf_dataset", "torch_loader"]
