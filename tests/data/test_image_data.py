"""Readers of the standard distribution files, on tiny files written here in the exact formats.

No test touches the network: downloads go through fake ``fetch`` callables.
"""

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
import scipy.io

from ib_jax import data as im
from ib_jax.data import mnist as mnist_module

RNG = np.random.default_rng(0)


def idx_bytes(arr):
    """An idx file's bytes: 0, 0, type code, rank, big-endian uint32 dims, big-endian data."""
    code = {
        np.dtype("u1"): 0x08,
        np.dtype("i1"): 0x09,
        np.dtype(">i2"): 0x0B,
        np.dtype(">i4"): 0x0C,
        np.dtype(">f4"): 0x0D,
        np.dtype(">f8"): 0x0E,
    }
    arr = np.asarray(arr)
    dt = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    head = bytes([0, 0, code[dt], arr.ndim])
    return head + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(dt).tobytes()


def write_idx(path, arr, *, gz=True):
    raw = idx_bytes(arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)


def tiny_mnist(directory, n_train=5, n_test=3):
    imgs = {s: RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (("train", n_train), ("t10k", n_test))}
    labs = {s: RNG.integers(0, 10, len(imgs[s]), dtype=np.uint8) for s in imgs}
    for s in imgs:
        write_idx(directory / f"{s}-images-idx3-ubyte.gz", imgs[s])
        write_idx(directory / f"{s}-labels-idx1-ubyte.gz", labs[s])
    return imgs, labs


def md5(b):
    return hashlib.md5(b).hexdigest()


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("IB_JAX_DATA_DIR", str(tmp_path / "env"))
    assert im.resolve_data_dir(tmp_path / "x", "/c") == tmp_path / "x"
    assert im.resolve_data_dir(None, "/c") == tmp_path / "env"
    monkeypatch.delenv("IB_JAX_DATA_DIR")
    assert str(im.resolve_data_dir(None, "/c")) == "/c/data"
    monkeypatch.setenv("IB_JAX_CACHE", str(tmp_path / "cache"))
    assert im.resolve_data_dir(None, None) == tmp_path / "cache" / "data"


@pytest.mark.parametrize("loader,sub", [(im.load_mnist, "mnist"), (im.load_fashion_mnist, "fashion_mnist")])
def test_idx_sets_round_trip(tmp_path, loader, sub):
    imgs, labs = tiny_mnist(tmp_path / sub)
    d = loader(tmp_path, download=False, verify=False)
    assert isinstance(d, tuple) and len(d) == 6 and d.n_classes == 10
    x_train, y_train, x_test, y_test, n_classes, desc = d
    assert x_train.shape == (5, 28, 28, 1) and x_test.shape == (3, 28, 28, 1)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    np.testing.assert_array_equal(x_train[..., 0] * 255.0, imgs["train"].astype(np.float32))  # exact: k/255*255 rounds back in float32
    np.testing.assert_array_equal(y_test, labs["t10k"])
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0 and "5 train / 3 test" in desc


def test_read_idx_general_types_and_uncompressed(tmp_path):
    a = RNG.normal(size=(3, 4)).astype(">f4")
    write_idx(tmp_path / "f.idx.gz", a)
    np.testing.assert_array_equal(im.read_idx(tmp_path / "f.idx.gz"), a)
    b = RNG.integers(-(2**31), 2**31 - 1, size=(2, 3, 2)).astype(">i4")
    write_idx(tmp_path / "i.idx", b, gz=False)
    out = im.read_idx(tmp_path / "i.idx")
    np.testing.assert_array_equal(out, b)
    assert out.dtype.isnative


def test_malformed_idx_files_name_the_problem(tmp_path):
    d = tmp_path / "mnist"
    imgs, labs = tiny_mnist(d)
    img = d / "train-images-idx3-ubyte.gz"
    lab = d / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(img.read_bytes())

    gz = gzip.compress
    cases = [
        ("bad idx magic", gz(b"\x01" + raw[1:])),
        ("type code 0x0c, expected 0x08", gz(idx_bytes(imgs["train"].astype(">i4")))),
        ("rank 1, expected 3", gz(idx_bytes(imgs["train"].ravel()))),
        (r"header says shape \(5, 28, 28\) \(3920 data bytes\) but the file holds 3919", gz(raw[:-1])),
        ("but the file holds 3921", gz(raw + b"\x00")),
        ("not a readable gzip", img.read_bytes()[:40]),  # truncated stream
        ("too short", b"\x00\x00"),  # uncompressed files are read too
        ("truncated idx header", raw[:10]),  # rank 3 needs 16 header bytes
    ]
    for msg, content in cases:
        img.write_bytes(content)
        with pytest.raises(ValueError, match=msg) as e:
            im.load_mnist(tmp_path, download=False, verify=False)
        assert str(img) in str(e.value), msg
    write_idx(img, imgs["train"][:, :27, :])
    with pytest.raises(ValueError, match="27x28, expected 28x28"):
        im.load_mnist(tmp_path, download=False, verify=False)
    write_idx(img, imgs["train"])
    write_idx(lab, labs["train"][:4])
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        im.load_mnist(tmp_path, download=False, verify=False)
    write_idx(lab, np.full(5, 10, np.uint8))
    with pytest.raises(ValueError, match=r"label 10 outside \[0, 10\)"):
        im.load_mnist(tmp_path, download=False, verify=False)


def test_missing_files_offline_say_what_to_put_where(tmp_path):
    with pytest.raises(ValueError) as e:
        im.load_mnist(tmp_path, download=False)
    msg = str(e.value)
    for r in im.MNIST_RESOURCES:
        assert str(tmp_path / "mnist" / r.filename) in msg and r.md5 in msg
    assert "paths.data_dir" in msg and "IB_JAX_DATA_DIR" in msg

    def offline(url, dest):
        raise OSError("network unreachable")

    with pytest.raises(ValueError, match="network unreachable") as e:
        im.load_fashion_mnist(tmp_path, download=True, fetch=offline)
    assert str(tmp_path / "fashion_mnist" / "train-images-idx3-ubyte.gz") in str(e.value)
    assert not any(p.is_file() for p in (tmp_path / "fashion_mnist").iterdir())  # no temp file survives


def test_found_files_are_checked_against_the_published_md5(tmp_path):
    tiny_mnist(tmp_path / "mnist")
    with pytest.raises(ValueError, match="has md5 .* published file has f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        im.load_mnist(tmp_path, download=False)  # verify=True by default


def test_download_verifies_and_moves_atomically(tmp_path):
    payload = b"exact bytes"
    res = im.Resource("f.bin", md5(payload), ("https://a/f.bin", "https://b/f.bin"))
    seen = []

    def fetch(url, dest):
        seen.append((url, dest))
        assert dest.parent == tmp_path and dest.name != "f.bin"  # written beside the target, under a temporary name
        assert not (tmp_path / "f.bin").exists()  # nothing under the final name before verification
        dest.write_bytes(b"corrupt" if url.startswith("https://a") else payload)

    out = im.download(res, tmp_path, fetch=fetch)
    assert out == tmp_path / "f.bin" and out.read_bytes() == payload
    assert [u for u, _ in seen] == ["https://a/f.bin", "https://b/f.bin"]  # the corrupt mirror was refused, the next one used
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]

    bad = im.Resource("g.bin", md5(b"other"), ("https://a/g.bin",))
    with pytest.raises(ValueError, match="checksum mismatch") as e:
        im.download(bad, tmp_path, fetch=lambda url, dest: dest.write_bytes(payload))
    assert "put these files in" in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]  # refused: nothing left in place, no temp file

    def dies(url, dest):
        dest.write_bytes(b"half")
        raise TimeoutError("timed out")  # an OSError

    with pytest.raises(ValueError, match="TimeoutError"):
        im.download(bad, tmp_path, fetch=dies)
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]


def test_loader_downloads_once_with_the_published_checksums(tmp_path, monkeypatch):
    src = tmp_path / "src"
    tiny_mnist(src)
    blobs = {p.name: p.read_bytes() for p in src.iterdir()}
    # the real md5s refuse these tiny files: nothing is kept
    with pytest.raises(ValueError, match="checksum mismatch"):
        im.load_mnist(tmp_path / "d", fetch=lambda url, dest: dest.write_bytes(blobs[url.rsplit("/", 1)[1]]))
    assert not any((tmp_path / "d" / "mnist").iterdir())
    # with checksums that match, every file arrives once and is read
    monkeypatch.setattr(mnist_module, "MNIST_RESOURCES", tuple(r._replace(md5=md5(blobs[r.filename])) for r in im.MNIST_RESOURCES))
    calls = []

    def fetch(url, dest):
        calls.append(url)
        dest.write_bytes(blobs[url.rsplit("/", 1)[1]])

    a = im.load_mnist(tmp_path / "d", fetch=fetch)
    b = im.load_mnist(tmp_path / "d", fetch=lambda url, dest: pytest.fail("downloaded twice"))
    assert len(calls) == 4 and all(u.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") for u in calls)
    np.testing.assert_array_equal(a.x_train, b.x_train)


# ---------------------------------------------------------------- CIFAR-10


def cifar_batch(n):
    img = RNG.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    data = img.transpose(0, 3, 1, 2).reshape(n, 3072)  # row: 1024 R, 1024 G, 1024 B, each plane row-major
    labels = [int(v) for v in RNG.integers(0, 10, n)]
    return img, {b"batch_label": b"tiny", b"labels": labels, b"data": data, b"filenames": [b"x.png"] * n}


class Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` and ``str`` as Python 2's ``str`` (BINSTRING), as cPickle did for the CIFAR batches."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = lambda self, obj: self.save_bytes(obj.encode("latin1"))


def py2_pickle(obj):
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # numpy 1.x / Python 2 module name


def write_cifar(folder, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for name in im.CIFAR10_BATCH_MD5:
        img, d = cifar_batch(n)
        (folder / name).write_bytes(py2_pickle(d))
        truth[name] = (img, np.asarray(d[b"labels"]))
    return truth


def test_cifar_batches_round_trip_and_pixel_layout(tmp_path):
    truth = write_cifar(tmp_path / "cifar10" / im.CIFAR10_FOLDER)
    x_train, y_train, x_test, y_test, n_classes, desc = im.load_cifar10(tmp_path, download=False, verify=False)
    assert x_train.shape == (10, 32, 32, 3) and x_test.shape == (2, 32, 32, 3) and n_classes == 10
    want = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_array_equal(x_train * 255.0, want.astype(np.float32))
    np.testing.assert_array_equal(y_test, truth["test_batch"][1])
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32


def test_cifar_pickle_variants_and_refusals(tmp_path):
    img, d = cifar_batch(3)
    legacy = py2_pickle(d)
    assert b"numpy.core.multiarray" in legacy and pickle.BINSTRING + struct.pack("<i", 3072 * 3) in legacy  # pixels as a py2 str
    (tmp_path / "legacy").write_bytes(legacy)
    x, y = im.read_cifar_batch(tmp_path / "legacy")
    np.testing.assert_array_equal(x, img)
    (tmp_path / "strkeys").write_bytes(pickle.dumps({k.decode(): v for k, v in d.items()}, protocol=5))
    np.testing.assert_array_equal(im.read_cifar_batch(tmp_path / "strkeys")[0], img)

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "pwned"),))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(ValueError, match="posix.mkdir is not allowed|os.mkdir is not allowed"):
        im.read_cifar_batch(tmp_path / "evil")
    assert not (tmp_path / "pwned").exists()
    for bad, msg in (
        ({b"labels": [1]}, "lacks keys"),
        ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}, r"uint8 \(n, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "must be 2 integers"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, "outside 0-9"),
    ):
        (tmp_path / "b").write_bytes(pickle.dumps(bad, protocol=2))
        with pytest.raises(ValueError, match=msg):
            im.read_cifar_batch(tmp_path / "b")
    (tmp_path / "b").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        im.read_cifar_batch(tmp_path / "b")


def test_cifar_archive_is_extracted_safely(tmp_path):
    stage = tmp_path / "stage"
    truth = write_cifar(stage / im.CIFAR10_FOLDER)
    (stage / "evil").write_bytes(b"x")
    archive = tmp_path / "cifar10" / im.CIFAR10_ARCHIVE.filename
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(stage / im.CIFAR10_FOLDER, arcname=im.CIFAR10_FOLDER)
        tar.add(stage / "evil", arcname="../evil")  # path traversal: must be ignored
        tar.add(stage / "evil", arcname=f"{im.CIFAR10_FOLDER}/../../evil2")
    d = im.load_cifar10(tmp_path, download=False, verify=False)
    np.testing.assert_array_equal(d.x_test * 255.0, truth["test_batch"][0].astype(np.float32))
    assert not (tmp_path / "evil").exists() and not (tmp_path / "evil2").exists()  # where a naive extractall would put them
    assert sorted(os.listdir(tmp_path / "cifar10" / im.CIFAR10_FOLDER)) == sorted(im.CIFAR10_BATCH_MD5)
    # an archive found on disk is checked against the published md5 when verify=True
    (tmp_path / "cifar10" / im.CIFAR10_FOLDER / "test_batch").unlink()
    with pytest.raises(ValueError, match="c58f30108f718f92721af3b95e74349a"):
        im.load_cifar10(tmp_path, download=False)
    # an archive without every batch is refused
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(stage / im.CIFAR10_FOLDER / "data_batch_1", arcname=f"{im.CIFAR10_FOLDER}/data_batch_1")
    with pytest.raises(ValueError, match="archive lacks"):
        im.load_cifar10(tmp_path, download=False, verify=False)


def test_cifar_missing_offline(tmp_path):
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz") as e:
        im.load_cifar10(tmp_path, download=False)
    assert str(tmp_path / "cifar10") in str(e.value) and "data_batch_5" in str(e.value)


# ---------------------------------------------------------------- IDNNs var_u.mat


def idnns_arrays():
    i = np.arange(4096)
    f = ((i[:, None] >> np.arange(11, -1, -1)) & 1).astype(np.uint8)  # most significant bit first, as in var_u.mat
    y = (f.sum(1) >= 6).astype(np.uint8)
    return f, y


@pytest.mark.parametrize("layout", ["row", "col", "onehot"])
def test_idnns_mat_layouts(tmp_path, layout):
    f, y = idnns_arrays()
    yy = {"row": y[None, :], "col": y[:, None], "onehot": np.stack([y, 1 - y], 1)}[layout]  # IDNNs one-hot is [y, 1 - y]
    scipy.io.savemat(tmp_path / "var_u.mat", {"F": f, "y": yy})
    d = im.load_idnns(tmp_path / "var_u.mat", seed=3, train_fraction=0.85)
    assert d.n_classes == 2 and d.x_train.shape[1] == 12 and len(d.x_train) + len(d.x_test) == 4096
    x = np.concatenate([d.x_train, d.x_test]).astype(int)
    lab = np.concatenate([d.y_train, d.y_test])
    idx = x @ (1 << np.arange(11, -1, -1))
    assert sorted(idx) == list(range(4096))  # every pattern exactly once
    np.testing.assert_array_equal(lab, y[idx])  # each row keeps its own label, y itself (not 1 - y)
    assert abs(d.y_train.mean() - y.mean()) < 2 / len(d.y_train)  # stratified


def test_idnns_malformed(tmp_path):
    f, y = idnns_arrays()
    p = tmp_path / "v.mat"
    with pytest.raises(ValueError, match="no such file"):
        im.load_idnns(p)
    for arrays, msg in (
        ({"F": f}, r"lacks arrays \['y'\]"),
        ({"F": f, "y": y[:-1]}, "expected 4096 labels"),
        ({"F": f, "y": 2 * y}, "must be 0/1"),
        ({"F": f, "y": np.stack([y, y], 1)}, "not one-hot"),
    ):
        scipy.io.savemat(p, arrays)
        with pytest.raises(ValueError, match=msg):
            im.load_idnns(p)
    p.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ValueError, match="not a readable MATLAB"):
        im.load_idnns(p)


def test_information_subset():
    a = im.information_subset(1000, 100, seed=7)
    assert a.dtype == np.int64 and a.shape == (100,) and len(np.unique(a)) == 100
    assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 1000
    np.testing.assert_array_equal(a, im.information_subset(1000, 100, seed=7))
    assert not np.array_equal(a, im.information_subset(1000, 100, seed=8))
    np.testing.assert_array_equal(im.information_subset(5, 5, seed=0), np.arange(5))
    # uniform: over S seeds each of N rows is picked ~Binomial(S, k/N); S=2000, k/N=1/4 gives
    # mean 500, sd sqrt(2000 * 0.25 * 0.75) = 19.4, and 5 sd bounds all 20 counts (p(fail) < 1e-5)
    counts = np.bincount(np.concatenate([im.information_subset(20, 5, s) for s in range(2000)]), minlength=20)
    assert np.all(np.abs(counts - 500) < 5 * 19.4), counts
    for args, msg in (((10, 11, 0), "estimator.n_info"), ((10, 0, 0), "estimator.n_info"), ((0, 1, 0), "n_total")):
        with pytest.raises(ValueError, match=msg):
            im.information_subset(*args)


def test_mnist_t10k_npz_script_checks_the_files_and_writes_images(tmp_path, monkeypatch):
    """scripts/mnist_t10k_npz.py: a missing file or a wrong checksum exits 2 and writes nothing; the
    real pair (here stand-ins whose MD5s are patched in) becomes x (n, 28, 28, 1) in [0, 1], y, and
    dataset=npz reads it and makes its own split."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location("mnist_t10k_npz", os.path.join(root, "scripts", "mnist_t10k_npz.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    labels = (np.arange(40) % 10).astype(np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    out = tmp_path / "m.npz"
    assert script.main([str(tmp_path), str(out)]) == 2 and not out.exists()  # labels missing
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    assert script.main([str(tmp_path), str(out)]) == 2 and not out.exists()  # not MNIST's published MD5s
    patched = [r._replace(md5=im.file_md5(tmp_path / r.filename)) if r.filename.startswith("t10k") else r for r in script.MNIST_RESOURCES]
    monkeypatch.setattr(script, "MNIST_RESOURCES", patched)
    assert script.main([str(tmp_path), str(out)]) == 0
    with np.load(out) as f:
        assert f["x"].shape == (40, 28, 28, 1) and f["x"].dtype == np.float32
        np.testing.assert_allclose(f["x"][..., 0], images / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(f["y"], labels)
    d = im.from_npz(out, train_fraction=0.75)
    assert len(d.y_train) == 30 and len(d.y_test) == 10 and d.x_train.shape[1:] == (28, 28, 1)
