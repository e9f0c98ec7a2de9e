"""WebDataset shards: plain POSIX tar files (Python's ``tarfile``) of
``KEY.image.npy``, ``KEY.label.npy`` and ``KEY.json`` members, which the
``webdataset`` package reads and decodes."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np

from ..schema import IMAGE, LABEL
from .layout import ShardedWriter, chip_name

__all__ = ["TarWriter"]


class TarWriter(ShardedWriter):
    format = "webdataset"
    suffix = ".tar"

    def open(self, path):
        return tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)

    def _add(self, name: str, payload: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mtime = 0
        self.file.addfile(info, io.BytesIO(payload))

    def write(self, k, image, label):
        self.target(k)  # opens the next shard when due
        key = chip_name(k, self.n)
        for part, data in ((IMAGE, image), (LABEL, label)):
            if data is None:
                continue
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(data), allow_pickle=False)
            self._add(f"{key}.{part}.npy", buf.getvalue())
        self._add(f"{key}.json", json.dumps(self.tile_meta(k)).encode())
