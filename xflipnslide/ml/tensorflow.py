"""The TensorFlow feed: a :class:`tf.data.Dataset` of
:class:`~xflipnslide.ml.feed.TileFeed` batches.

Imported only by :func:`xflipnslide.tf_dataset`, which checks that
TensorFlow is installed first; TensorFlow is imported inside
:func:`make_dataset`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..schema import IMAGE, LABEL

__all__ = ["make_dataset"]


def make_dataset(feed, channels_last: bool) -> Any:
    """A :class:`tf.data.Dataset` whose every pass is the next epoch of ``feed``.

    Images are float32, channels-last ``(B, T, T, C)`` when ``channels_last``
    (else as the feed gives them); labels int64. Its cardinality is the
    number of batches an epoch yields (one producer: the same every epoch,
    the last partial batch counted unless ``drop_last``), so Keras knows
    where an epoch ends and never reports that the input ran out of data.
    """
    import tensorflow as tf

    rest_x = tuple(feed.image.shape[1:])
    if channels_last:
        rest_x = (*rest_x[1:], rest_x[0]) if len(rest_x) == 3 else rest_x
    spec_x = tf.TensorSpec((None, *rest_x), tf.float32)
    epochs = iter(range(1 << 62))

    def generate():
        for batch in feed.epoch(next(epochs)):
            x = batch[IMAGE]
            if channels_last and x.ndim == 4:
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            if LABEL in batch:
                yield x, batch[LABEL]
            else:
                yield x

    if feed.label is not None:
        spec_y = tf.TensorSpec((None, *feed.label.shape[1:]), tf.int64)
        signature = (spec_x, spec_y)
    else:
        signature = spec_x
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(feed.order.count(1, 0)))
