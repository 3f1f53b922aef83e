"""Checkpoints: a bit-exact round trip, an atomic write, and clear errors for bad files."""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from numpy_ref.checkpoint import (
    FORMAT_VERSION,
    METADATA_KEY,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from numpy_ref.loops import EpochStats
from numpy_ref.spec import ModelSpec, flatten_params, init_params
from numpy_ref.vocab import Vocab

VOCAB = Vocab(list("the time machine"))


def saved(tmp_path: Path, kind="lstm", dtype=np.float32, **metadata):
    spec = ModelSpec(kind, len(VOCAB), 4, num_layers=2, gru_reset="after")
    params = init_params(spec, seed=1, dtype=dtype, sigma=0.7)
    path = save_checkpoint(tmp_path / "model.npz", spec, params, VOCAB, **metadata)
    return path, spec, params


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_exact(tmp_path: Path, kind, dtype) -> None:
    rng = np.random.default_rng(5)
    rng.standard_normal(3)
    history = [EpochStats(5.25, 1234.5, 100, 0.081), EpochStats(math.inf, 0.1, 1, 10.0)]
    config = {"lr": 1.0, "theta": 1.0, "batch_size": 32, "note": "über"}
    path, spec, params = saved(
        tmp_path,
        kind,
        dtype,
        config=config,
        epoch=7,
        history=history,
        rng_state=rng.bit_generator.state,
    )
    ckpt = load_checkpoint(path, spec=spec, vocab=VOCAB)
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.spec == spec and ckpt.vocab == VOCAB
    assert ckpt.vocab.token_freqs == VOCAB.token_freqs
    assert (ckpt.config, ckpt.epoch, ckpt.history) == (config, 7, history)
    restored = np.random.default_rng()
    restored.bit_generator.state = ckpt.rng_state
    assert np.array_equal(restored.standard_normal(4), rng.standard_normal(4))
    flat, loaded = flatten_params(params), flatten_params(ckpt.params)
    assert list(loaded) == list(flat)
    for key, value in flat.items():
        assert loaded[key].dtype == value.dtype
        assert np.array_equal(loaded[key], value), key


def test_jax_like_arrays_are_taken_with_np_asarray(tmp_path: Path) -> None:
    class ArrayLike:  # what a jax.Array offers NumPy
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a

    spec = ModelSpec("rnn", len(VOCAB), 3)
    params = init_params(spec, seed=2)
    wrapped = {
        "layers": [{k: ArrayLike(v) for k, v in params["layers"][0].items()}],
        "W_hq": ArrayLike(params["W_hq"]),
        "b_q": ArrayLike(params["b_q"]),
    }
    save_checkpoint(tmp_path / "j.npz", spec, wrapped, VOCAB)
    loaded = load_checkpoint(tmp_path / "j.npz").params
    assert np.array_equal(loaded["W_hq"], params["W_hq"])


def test_the_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    path, spec, params = saved(tmp_path, epoch=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, spec, params, VOCAB, epoch=2)
    assert path.read_bytes() == before  # the old checkpoint survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*nothing.npz"):
        load_checkpoint(tmp_path / "nothing.npz")


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_a_truncated_file_is_reported_as_damaged(tmp_path: Path, keep) -> None:
    path, _, _ = saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="not a readable checkpoint \\(truncated or damaged"):
        load_checkpoint(path)


def test_a_flipped_byte_in_an_array_is_reported_as_damaged(tmp_path: Path) -> None:
    path, _, _ = saved(tmp_path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("W_hq.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + info.file_size - 3] ^= 0xFF  # CRC fails
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_checkpoint(path)


def rewrite_metadata(path: Path, change) -> None:
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    metadata = json.loads(str(arrays[METADATA_KEY][()]))
    change(metadata, arrays)
    arrays[METADATA_KEY] = np.array(json.dumps(metadata))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_another_format_version_is_refused(tmp_path: Path) -> None:
    path, _, _ = saved(tmp_path)
    rewrite_metadata(path, lambda m, a: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}; this code "):
        load_checkpoint(path)


def test_an_npz_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(CheckpointError, match="without '__metadata__': not an rnn-lm checkpoint"):
        load_checkpoint(tmp_path / "other.npz")


def test_a_different_spec_is_refused_and_named(tmp_path: Path) -> None:
    path, spec, _ = saved(tmp_path)
    other = ModelSpec(spec.kind, spec.vocab_size, 8, spec.num_layers, spec.gru_reset)
    with pytest.raises(CheckpointError, match="another spec \\(num_hiddens: file 4 vs given 8\\)"):
        load_checkpoint(path, spec=other)


def test_a_different_vocabulary_is_refused_and_named(tmp_path: Path) -> None:
    path, _, _ = saved(tmp_path)
    swapped = Vocab.from_dict(VOCAB.to_dict())
    swapped.idx_to_token[2], swapped.idx_to_token[3] = (
        swapped.idx_to_token[3],
        swapped.idx_to_token[2],
    )
    with pytest.raises(CheckpointError, match="another vocabulary \\(index 2 is"):
        load_checkpoint(path, vocab=swapped)
    with pytest.raises(CheckpointError, match="file has 10 tokens, given has 4"):
        load_checkpoint(path, vocab=Vocab(list("abc")))


def test_parameters_that_do_not_fit_the_spec_are_refused(tmp_path: Path) -> None:
    path, _, _ = saved(tmp_path)
    rewrite_metadata(path, lambda m, a: a.update({"W_hq": np.zeros((4, 3), np.float32)}))
    with pytest.raises(
        CheckpointError, match=r"do not match its spec: .*'W_hq' has shape \(4, 3\)"
    ):
        load_checkpoint(path)
    path, _, _ = saved(tmp_path)
    rewrite_metadata(path, lambda m, a: a.pop("layers.1.W_hf"))
    with pytest.raises(CheckpointError, match=r"do not match its spec: .*layers'\]\[1\] has keys"):
        load_checkpoint(path)


def test_saving_refuses_params_and_vocab_that_do_not_fit_the_spec(tmp_path: Path) -> None:
    spec = ModelSpec("gru", len(VOCAB), 4)
    with pytest.raises(ValueError, match="'layers.0.W_xz' has shape \\(11, 5\\), expected"):
        save_checkpoint(tmp_path / "x.npz", spec, init_params(ModelSpec("gru", 11, 5)), VOCAB)
    with pytest.raises(
        ValueError, match="vocabulary has 4 tokens but the model's vocab_size is 10"
    ):
        save_checkpoint(tmp_path / "x.npz", spec, init_params(spec), Vocab(list("abc")))
    with pytest.raises(ValueError, match="must be JSON-serialisable"):
        save_checkpoint(tmp_path / "x.npz", spec, init_params(spec), VOCAB, config={"f": object()})
    assert not any(tmp_path.iterdir())


def test_the_file_loads_without_pickle_and_keeps_the_documented_layout(tmp_path: Path) -> None:
    path, spec, params = saved(tmp_path, epoch=3)
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == set(flatten_params(params)) | {METADATA_KEY}
        metadata = json.loads(str(archive[METADATA_KEY][()]))
    assert metadata["format_version"] == FORMAT_VERSION
    assert metadata["spec"] == spec.to_dict() and metadata["epoch"] == 3
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_random_bytes_are_not_a_checkpoint_and_no_pickle_is_suggested(tmp_path: Path) -> None:
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(CheckpointError, match="not a complete .npz archive") as info:
        load_checkpoint(path)
    assert "pickle" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epoch", "seven", "epoch must be an integer >= 0, got 'seven'"),
        ("epoch", -1, "epoch must be an integer >= 0"),
        ("history", {"a": 1}, "history must be a list"),
        ("history", [{}] * 9, "history must be a list of at most 3 epochs"),
        ("rng_state", {"bit_generator": "nope"}, "metadata is damaged"),
        ("spec", {"kind": "rnn"}, "metadata is damaged"),
    ],
)
def test_every_damaged_metadata_field_is_a_checkpoint_error(tmp_path, field, value, message):
    path, _, _ = saved(tmp_path, epoch=3)
    rewrite_metadata(path, lambda m, a: m.update({field: value}))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_vocabulary_that_does_not_fit_the_spec_is_a_checkpoint_error(tmp_path: Path) -> None:
    path, _, _ = saved(tmp_path)
    rewrite_metadata(path, lambda m, a: m.update(vocab=Vocab(list("abc")).to_dict()))
    with pytest.raises(CheckpointError, match="vocabulary has 4 tokens but the model's vocab_size"):
        load_checkpoint(path)
