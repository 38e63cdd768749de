"""Streaming reader and writer for safetensors checkpoints (single file or sharded with an index).

Headers are parsed up front, so keys, shapes and truncation are validated before any tensor is read; tensors
are then read one at a time, each straight into its own array (bfloat16 included, via ml_dtypes), never the
whole file. The writer
lays out the header from the tensors' shapes first and then takes the tensors one at a time.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Iterator

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
INDEX_FILE = "model.safetensors.index.json"


class CheckpointFormatError(ValueError):
    """A checkpoint file or directory that cannot be read as claimed."""


class TensorInfo:
    __slots__ = ("key", "dtype", "shape", "file", "start", "end")

    def __init__(self, key, dtype, shape, file, start, end):
        self.key, self.dtype, self.shape, self.file, self.start, self.end = key, dtype, shape, file, start, end


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Parses and validates one .safetensors header. Raises CheckpointFormatError on corrupt/truncated files."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointFormatError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise CheckpointFormatError(f"{path}: truncated safetensors file (header declares {n} bytes, "
                                        f"file has {size - 8} after the length prefix)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointFormatError(f"{path}: corrupt safetensors header ({e})") from None
    data_start, data_size = 8 + n, size - 8 - n
    out = {}
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype = _DTYPES[meta["dtype"]]
            shape = tuple(int(d) for d in meta["shape"])
            start, end = (int(o) for o in meta["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointFormatError(f"{path}: bad header entry for {key!r}: {meta!r} ({e})") from None
        if end > data_size:
            raise CheckpointFormatError(f"{path}: truncated safetensors file: tensor {key!r} ends at byte {end} "
                                        f"of the data section but only {data_size} bytes are present")
        if end - start != int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize:
            raise CheckpointFormatError(f"{path}: tensor {key!r} byte range does not match {meta['dtype']}{shape}")
        out[key] = TensorInfo(key, dtype, shape, path, data_start + start, data_start + end)
    return out


class SafetensorsCheckpoint:
    """All tensors of a checkpoint directory, by key. `tensors` maps key -> TensorInfo."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.files = self._weight_files(self.directory)
        self.tensors: dict[str, TensorInfo] = {}
        for file in self.files:
            for key, info in read_header(file).items():
                if key in self.tensors:
                    raise CheckpointFormatError(f"tensor {key!r} appears in both {self.tensors[key].file.name} "
                                                f"and {file.name}")
                self.tensors[key] = info
        self._check_index()

    @staticmethod
    def _weight_files(directory: Path) -> list[Path]:
        index = directory / INDEX_FILE
        if index.exists():
            names = sorted(set(_load_json(index).get("weight_map", {}).values()))
            missing = [n for n in names if not (directory / n).exists()]
            if missing:
                raise CheckpointFormatError(f"{index} names shard file(s) that do not exist: {missing}")
            if not names:
                raise CheckpointFormatError(f"{index} has an empty weight_map")
            return [directory / n for n in names]
        files = sorted(directory.glob("*.safetensors"))
        if not files:
            raise CheckpointFormatError(f"no *.safetensors weights in {directory}")
        return files

    def _check_index(self) -> None:
        index = self.directory / INDEX_FILE
        if not index.exists():
            return
        weight_map = _load_json(index)["weight_map"]
        wrong = [k for k, f in weight_map.items() if k not in self.tensors or self.tensors[k].file.name != f]
        if wrong:
            raise CheckpointFormatError(f"{index} disagrees with the shard files for {len(wrong)} key(s), "
                                        f"e.g. {wrong[:5]}")

    def read(self, key: str) -> np.ndarray:
        """One tensor as a fresh numpy array, read straight into it (no intermediate copy, no mapping kept)."""
        info = self.tensors[key]
        count = int(np.prod(info.shape, dtype=np.int64))
        x = np.fromfile(info.file, dtype=info.dtype, count=count, offset=info.start)
        if x.size != count:
            raise CheckpointFormatError(f"{info.file}: tensor {key!r} is cut short ({x.size} of {count} elements)")
        return x.reshape(info.shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)


def write_safetensors(path: str | os.PathLike, layout: dict[str, tuple[np.dtype, tuple[int, ...]]],
                      tensors: Iterator[tuple[str, np.ndarray]], metadata: dict[str, str] | None = None) -> int:
    """Writes one .safetensors file. `layout`: key -> (dtype, shape), in file order; `tensors` yields (key, array)
    in that same order, one at a time (only one is held here). Returns the data size in bytes."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for key, (dtype, shape) in layout.items():
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[key] = {"dtype": _NAMES[np.dtype(dtype)], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
    expected = iter(layout.items())
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for key, x in tensors:
            want_key, (dtype, shape) = next(expected, (None, (None, None)))
            if key != want_key or np.dtype(x.dtype) != np.dtype(dtype) or tuple(x.shape) != tuple(shape):
                raise ValueError(f"{path}: got tensor {key!r} {x.dtype}{tuple(x.shape)} where the header declares "
                                 f"{want_key!r} {dtype}{shape}")
            f.write(np.ascontiguousarray(x).reshape(-1).view(np.uint8).data)
    missing = [k for k, _ in expected]
    if missing:
        raise ValueError(f"{path}: {len(missing)} declared tensor(s) never came, e.g. {missing[:3]}")
    return offset


def find_pickle_weights(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())


class PickleCheckpoint:
    """Legacy torch .bin/.pt weights, loaded with `torch.load(weights_only=True)` (no arbitrary code)."""

    def __init__(self, directory: str | os.PathLike):
        try:
            import torch
        except ImportError:
            raise CheckpointFormatError("reading .bin/.pt weights needs PyTorch installed") from None
        self.directory = Path(directory)
        self.files = find_pickle_weights(self.directory)
        self._arrays: dict[str, np.ndarray] = {}
        for file in self.files:
            try:
                state = torch.load(file, map_location="cpu", weights_only=True)
            except Exception as e:  # UnpicklingError (disallowed object / corrupt), EOFError, RuntimeError (zip)...
                raise CheckpointFormatError(f"{file}: cannot be read with torch.load(weights_only=True): "
                                            f"{_torch_load_reason(e)}") from None
            bad = [k for k, t in state.items() if not isinstance(t, torch.Tensor)] if isinstance(state, dict) else []
            if not isinstance(state, dict) or bad:
                what = f"non-tensor values for keys {bad[:5]}" if bad else f"a {type(state).__name__}"
                raise CheckpointFormatError(f"{file}: expected a state dict (name -> tensor), got {what}")
            for key, t in state.items():
                t = t.detach().cpu()
                self._arrays[key] = (t.float().numpy().astype(ml_dtypes.bfloat16) if t.dtype == torch.bfloat16
                                     else t.numpy())
        self.tensors = {k: TensorInfo(k, a.dtype, a.shape, None, 0, 0) for k, a in self._arrays.items()}

    def read(self, key: str) -> np.ndarray:
        return self._arrays[key]

    def __iter__(self):
        return iter(self.tensors)


def _torch_load_reason(e: Exception) -> str:
    """The informative part of a torch.load error (not its advice to retry with weights_only=False)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n", 1)[0].split(" Please use", 1)[0]
    text = " ".join(text.split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointFormatError(f"{path}: invalid JSON ({e})") from None
