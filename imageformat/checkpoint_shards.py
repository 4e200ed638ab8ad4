"""Checkpoint shards of bounded size for TensorFlow 2.15, which cannot write them.

TensorFlow 2.16 added SaveOptions.experimental_sharding_callback
(``tf.train.experimental.MaxShardSizePolicy``); before it, a save writes one
data file per device, so one file for a model on a CPU host however large.
``reshard`` rewrites such a checkpoint with TensorFlow's own ops, the way its
sharded save assembles per-device parts: each group of tensors is written by
SaveV2 to a temporary prefix, and MergeV2Checkpoints merges the parts under
the checkpoint's prefix (variables.data-0000i-of-0000N plus one index).

Unlike MaxShardSizePolicy, a tensor larger than the limit is not cut into
slices: it gets a shard of its own. One group is held in memory at a time.
"""
from __future__ import annotations

import glob
import math
import os
import shutil
import tempfile

import tensorflow as tf


def reshard(prefix: str, max_shard_size: int) -> int:
    """Rewrites the checkpoint at ``prefix`` in shards of at most ``max_shard_size`` bytes
    (whole tensors); returns the number of shards it now has, 0 if it was left as it was
    (everything fits one shard, or a tensor's dtype has no byte size to group by)."""
    check_max_shard_size(max_shard_size)
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    shapes = reader.get_variable_to_shape_map()
    if not all(dtype.is_numpy_compatible for dtype in dtypes.values()):
        return 0  # e.g. a variant (a saved dataset iterator): TensorFlow's layout stays
    groups = _groups([(key, _size(prefix, key, dtypes[key], shapes[key])) for key in sorted(dtypes)],
                     max_shard_size)
    if len(groups) <= 1:
        return 0
    parts_dir = tempfile.mkdtemp(prefix=".shards-", dir=os.path.dirname(prefix))
    try:
        parts = []
        for number, keys in enumerate(groups):
            part = os.path.join(parts_dir, f"part-{number:05d}")
            tf.raw_ops.SaveV2(prefix=part, tensor_names=keys, shape_and_slices=[""] * len(keys),
                              tensors=_restore(prefix, keys, dtypes))
            parts.append(part)
        tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=parts, destination_prefix=prefix,
                                      delete_old_dirs=True)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    # One shard per part, named as TensorFlow names N shards; any other data file is the save's own.
    merged = {f"{prefix}.data-{number:05d}-of-{len(groups):05d}" for number in range(len(groups))}
    for stale in set(glob.glob(glob.escape(prefix) + ".data-*")) - merged:
        os.remove(stale)
    return len(groups)


def check_max_shard_size(value: object) -> None:
    """The one rule for a shard limit, whichever TensorFlow applies it."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"max_shard_size must be a positive number of bytes, got {value!r}")


def _size(prefix: str, key: str, dtype: tf.DType, shape: list[int]) -> int:
    if dtype == tf.string:  # no fixed width: measured (such tensors are small, e.g. the object graph)
        [value] = _restore(prefix, [key], {key: dtype})
        return int(tf.reduce_sum(tf.strings.length(value)))
    return math.prod(shape) * dtype.size


def _groups(sized_keys: list[tuple[str, int]], limit: int) -> list[list[str]]:
    """Consecutive keys, a new group whenever the next tensor would take one past ``limit``."""
    groups: list[list[str]] = []
    total = 0
    for key, size in sized_keys:
        if not groups or total + size > limit:
            groups.append([])
            total = 0
        groups[-1].append(key)
        total += size
    return groups


def _restore(prefix: str, keys: list[str], dtypes: dict[str, tf.DType]) -> list[tf.Tensor]:
    return tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=keys, shape_and_slices=[""] * len(keys),
                                dtypes=[dtypes[key] for key in keys])
