"""checkpoint_shards.reshard: size-bounded shards for TensorFlow 2.15, built from TensorFlow's own ops.

Run on every supported TensorFlow: the function is what imageformat.save uses
before 2.16 (test_save_load covers that path there), and it must not depend on
the newer TensorFlow the main suite has.
"""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tf_bigexport.imageformat import checkpoint_shards


def write_checkpoint(directory: pathlib.Path) -> tuple[str, tf.train.Checkpoint]:
    rng = np.random.default_rng(5)
    state = tf.train.Checkpoint(
        small=tf.Variable(np.arange(10, dtype=np.int64)),
        wide=tf.Variable(rng.standard_normal(40_000).astype(np.float32)),  # 160 kB: past the limit alone
        words=tf.Variable(tf.constant([b"alpha", b"\x00binary", "ünïcode".encode()])),
        halves=[tf.Variable(rng.standard_normal(3_000).astype(np.float16)) for _ in range(6)],  # 6 kB each
        flags=tf.Variable([True, False, True]),
        half_precision=tf.Variable(tf.constant([1.5, -2.0], dtype=tf.bfloat16)))
    return state.write(str(directory / "ckpt")), state


def restored_copy(prefix: str, state: tf.train.Checkpoint) -> tf.train.Checkpoint:
    copy = tf.train.Checkpoint(
        small=tf.Variable(tf.zeros_like(state.small)), wide=tf.Variable(tf.zeros_like(state.wide)),
        words=tf.Variable(tf.constant(["", "", ""])), halves=[tf.Variable(tf.zeros_like(v)) for v in state.halves],
        flags=tf.Variable([False, False, False]), half_precision=tf.Variable(tf.zeros([2], tf.bfloat16)))
    copy.read(prefix).assert_consumed()
    return copy


def test_reshards_into_bounded_shards_that_restore_every_value(tmp_path: pathlib.Path) -> None:
    prefix, state = write_checkpoint(tmp_path)
    assert len(list(tmp_path.glob("ckpt.data-*"))) == 1

    shards = checkpoint_shards.reshard(prefix, max_shard_size=20_000)

    files = sorted(tmp_path.glob("ckpt.data-*"))
    assert shards == len(files) >= 3
    assert [f.name for f in files] == [f"ckpt.data-{i:05d}-of-{shards:05d}" for i in range(shards)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f.name for f in files] + ["ckpt.index"])
    # Whole tensors per shard: only the one tensor past the limit makes a shard larger than it.
    assert sum(f.stat().st_size > 20_000 for f in files) == 1

    copy = restored_copy(prefix, state)
    np.testing.assert_array_equal(copy.small.numpy(), state.small.numpy())
    np.testing.assert_array_equal(copy.flags.numpy(), state.flags.numpy())
    np.testing.assert_array_equal(copy.wide.numpy(), state.wide.numpy())
    np.testing.assert_array_equal(copy.words.numpy(), state.words.numpy())
    np.testing.assert_array_equal(copy.half_precision.numpy(), state.half_precision.numpy())
    for restored, original in zip(copy.halves, state.halves):
        np.testing.assert_array_equal(restored.numpy(), original.numpy())


def test_a_checkpoint_that_fits_one_shard_is_left_as_it_was(tmp_path: pathlib.Path) -> None:
    prefix, _ = write_checkpoint(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert checkpoint_shards.reshard(prefix, max_shard_size=1 << 30) == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("size", [0, -1, 1.5, True, None])
def test_the_limit_must_be_a_positive_number_of_bytes(tmp_path: pathlib.Path, size: object) -> None:
    with pytest.raises(ValueError, match="max_shard_size must be a positive number of bytes"):
        checkpoint_shards.reshard(str(tmp_path / "ckpt"), size)  # type: ignore[arg-type]
