"""Issue 18, uploads: size limits checked before reading, FIFOs / devices / sockets / links out of the folder
refused without blocking, zip members inflated through a stream with a hard cap on the bytes produced.

The zip bomb is written byte by byte (:func:`craft_zip`): a raw deflate stream of 1 GiB of zeros (1 MB on disk)
under a local header and central directory that declare a small size, which ``zipfile`` trusts."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest

from annotation.errors import InvalidInput
from annotation.uploads import is_regular_file_inside, read_upload, read_zip_members

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20


# ---- crafting zips ---------------------------------------------------------------------------------------------
def zeros_deflate(mib: int) -> bytes:
    """A raw deflate stream that inflates to ``mib`` MiB of zeros: one fully flushed 1 MiB block (it refers to
    nothing before it) repeated, then an empty final block. About 1 KB per MiB."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(MIB)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def zeros_crc(n: int) -> int:
    crc, mib = 0, bytes(MIB)
    for _ in range(n // MIB):
        crc = zlib.crc32(mib, crc)
    return zlib.crc32(bytes(n % MIB), crc)


def craft_zip(members: list[tuple[str, bytes, int, int]], *, method: int = zipfile.ZIP_DEFLATED,
              flags: int = 0, same_offset: bool = False) -> bytes:
    """A zip whose members are (name, compressed data, declared size, CRC) as given: the local header and the
    central directory both carry the declared size, whatever the data inflates to. ``same_offset``: every
    central-directory entry points at the first member's data (overlapping entries)."""
    out, central = io.BytesIO(), []
    for name, data, declared, crc in members:
        offset = out.tell()
        raw = name.encode()
        out.write(struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, flags, method, 0, 0x21, crc, len(data),
                              declared, len(raw), 0) + raw + data)
        central.append((raw, data, declared, crc, 0 if same_offset else offset))
    cd_start = out.tell()
    for raw, data, declared, crc, offset in central:
        out.write(struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, flags, method, 0, 0x21, crc,
                              len(data), declared, len(raw), 0, 0, 0, 0, (stat.S_IFREG | 0o644) << 16, offset) + raw)
    cd_end = out.tell()
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), cd_end - cd_start, cd_start,
                          0))
    return out.getvalue()


def honest_zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def bomb(mib: int = 1024, declared: int = 1000, crc: str = "full") -> bytes:
    """One member, ``x.png``, inflating to ``mib`` MiB of zeros while its headers say ``declared`` bytes; its CRC
    is that of the whole output (``full``: only the size lies) or of the declared prefix (``prefix``: what
    ``zipfile`` checks when it cuts the output at the declared size, so that check passes)."""
    value = zeros_crc(mib * MIB) if crc == "full" else zeros_crc(declared)
    return craft_zip([("x.png", zeros_deflate(mib), declared, value)])


# ---- read_zip_members: honest archives -------------------------------------------------------------------------
def test_reads_members_and_skips_unwanted():
    data = honest_zip({"a.png": b"A" * 5000, "dir/b.PNG": b"B" * 10, "notes.txt": b"hello", "empty.png": b""})
    res = read_zip_members(data, wanted=lambda n: n.lower().endswith(".png"), label="up.zip")
    assert res.files == [("up.zip:a.png", b"A" * 5000), ("up.zip:dir/b.PNG", b"B" * 10), ("up.zip:empty.png", b"")]
    assert res.skipped == ["up.zip:notes.txt"]
    files, skipped = read_zip_members(data)  # a plain (files, skipped) pair, as images.read_zip returns
    assert len(files) == 4 and skipped == []


def test_reads_stored_members_and_paths(tmp_path):
    data = honest_zip({"a.png": os.urandom(3000)}, method=zipfile.ZIP_STORED)
    (tmp_path / "s.zip").write_bytes(data)
    assert read_zip_members(tmp_path / "s.zip").files == read_zip_members(data).files


# ---- read_zip_members: lying headers ---------------------------------------------------------------------------
def test_zipfile_trusts_the_understated_size():
    """The crafted archive really lies: ``zipfile`` reports the small size and cuts the output there."""
    data = craft_zip([("x.png", zeros_deflate(4), 1000, zeros_crc(1000))])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.getinfo("x.png").file_size == 1000
        assert zf.read("x.png") == bytes(1000)  # passes its CRC check: the cut is invisible to zipfile


@pytest.mark.parametrize("crc", ["full", "prefix"])
def test_understated_member_is_cut_at_the_cap_and_refused(crc):
    data = craft_zip([("x.png", zeros_deflate(4), 1000, zeros_crc(4 * MIB if crc == "full" else 1000))])
    with pytest.raises(InvalidInput, match=r"member x\.png: inflates to more than the limit of 1048576 bytes "
                                           r"although its header says 1000"):
        read_zip_members(data, max_member_bytes=MIB)


def test_understated_member_under_the_cap_is_refused_by_its_length():
    data = craft_zip([("x.png", zeros_deflate(1), 1000, zeros_crc(MIB))])  # only the size lies
    with pytest.raises(InvalidInput, match="inflates to 1048576 bytes but its header says 1000"):
        read_zip_members(data, max_member_bytes=4 * MIB)
    data = craft_zip([("x.png", zeros_deflate(1), 1000, zeros_crc(1000))])  # and the CRC fits the declared size
    with pytest.raises(InvalidInput, match="Bad CRC-32"):
        read_zip_members(data, max_member_bytes=4 * MIB)


def test_overstated_member_is_refused():
    data = craft_zip([("x.png", zeros_deflate(1), 2 * MIB, zeros_crc(MIB))])
    with pytest.raises(InvalidInput, match="inflates to 1048576 bytes but its header says 2097152"):
        read_zip_members(data, max_member_bytes=4 * MIB)


def test_bad_crc_is_refused():
    data = craft_zip([("x.png", zeros_deflate(1), MIB, 12345)])
    with pytest.raises(InvalidInput, match=r"member x\.png: cannot be read \(BadZipFile: Bad CRC-32"):
        read_zip_members(data)


def test_total_cap_counts_produced_bytes():
    """An honest 1 MiB member leaves 0.5 MiB of a 1.5 MiB total: the next member (it says 100 bytes, makes
    4 MiB) is cut there."""
    members = [("a.png", zeros_deflate(1), MIB, zeros_crc(MIB)), ("b.png", zeros_deflate(4), 100, zeros_crc(4 * MIB))]
    with pytest.raises(InvalidInput, match=r"member b\.png: inflates to more than the limit of 524288 bytes"):
        read_zip_members(craft_zip(members), max_member_bytes=4 * MIB, max_total_bytes=3 * MIB // 2)


def test_declared_sizes_refused_before_inflating():
    data = honest_zip({"a.png": bytes(3 * MIB)})
    with pytest.raises(InvalidInput, match=r"member a\.png: 3145728 bytes is more than the limit of 1048576"):
        read_zip_members(data, max_member_bytes=MIB)
    data = honest_zip({f"{i}.png": bytes(MIB) for i in range(3)})
    with pytest.raises(InvalidInput, match="unpacks to 3145728 bytes, more than the limit of 2097152"):
        read_zip_members(data, max_member_bytes=MIB, max_total_bytes=2 * MIB)


# ---- read_zip_members: names, types, methods -------------------------------------------------------------------
@pytest.mark.parametrize("name, why", [("../x.png", "a '..' part"), ("a/../../x.png", "a '..' part"),
                                       ("a\\..\\x.png", "a '..' part"), ("/etc/x.png", "an absolute path"),
                                       ("\\x.png", "an absolute path"), ("C:/x.png", "a drive letter"),
                                       ("c:x.png", "a drive letter")])
def test_unsafe_names_refuse_the_archive(name, why):
    data = honest_zip({"ok.png": b"1", name: b"2"})
    with pytest.raises(InvalidInput, match=why):
        read_zip_members(data)


def test_symlink_member_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link.png")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(InvalidInput, match=r"member link\.png: a symbolic link"):
        read_zip_members(buf.getvalue())


def test_member_name_is_escaped_in_messages():
    data = honest_zip({'<img src=x onerror="alert(1)">/../x.png': b"1"})
    with pytest.raises(InvalidInput) as err:
        read_zip_members(data, label="<b>up</b>.zip")
    msg = str(err.value)
    assert "<" not in msg and "&lt;img" in msg and "&lt;b&gt;up&lt;/b&gt;.zip" in msg


def test_overlapping_members_are_refused():
    data = craft_zip([("a.png", zeros_deflate(1), MIB, zeros_crc(MIB)), ("b.png", b"", 0, 0)], same_offset=True)
    with pytest.raises(InvalidInput, match="overlapping entries"):
        read_zip_members(data)


def test_bzip2_and_encrypted_members_are_refused():
    with pytest.raises(InvalidInput, match="compression method 12 is not accepted"):
        read_zip_members(honest_zip({"a.png": b"x" * 100}, method=zipfile.ZIP_BZIP2))
    data = craft_zip([("a.png", zeros_deflate(1), MIB, zeros_crc(MIB))], flags=0x1)
    with pytest.raises(InvalidInput, match="is encrypted"):
        read_zip_members(data)


def test_member_count_and_garbage():
    with pytest.raises(InvalidInput, match="4 members is more than the limit of 3"):
        read_zip_members(honest_zip({f"{i}.png": b"1" for i in range(4)}), max_members=3)
    with pytest.raises(InvalidInput, match="not a readable zip archive"):
        read_zip_members(b"PK\x03\x04 this is not a zip")


# ---- the 1 GiB bomb: peak memory in a fresh process ------------------------------------------------------------
PROBE = """
import importlib, json, resource, sys, time
from annotation.errors import InvalidInput
module, name = sys.argv[2].split(":")
read = getattr(importlib.import_module(module), name)
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    files, skipped = read(data)
    outcome = f"accepted: {[(n, len(b)) for n, b in files]}"
except InvalidInput as err:
    outcome = str(err)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kib": before, "after_kib": after, "seconds": time.perf_counter() - t, "outcome": outcome}))
"""


# annotation.images.read_zip inflates through read_zip_members (on main a2383be it took about 2 GiB and 7 s, then
# refused on the CRC, or accepted a 1000-byte cut if the CRC fits the cut).
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
@pytest.mark.parametrize("reader", ["annotation.uploads:read_zip_members", "annotation.images:read_zip"])
@pytest.mark.parametrize("crc", ["full", "prefix"])
def test_one_gib_bomb_is_refused_with_little_memory(tmp_path, reader, crc):
    data = bomb(1024, crc=crc)
    assert len(data) < 1_100_000  # a 1 MB upload...
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.getinfo("x.png").file_size == 1000  # ...whose header says 1000 bytes (it inflates to 1 GiB)
    path = tmp_path / "bomb.zip"
    path.write_bytes(data)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path), reader], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    r = json.loads(proc.stdout)
    assert "member x.png: inflates to more than the limit of 20971520 bytes" in r["outcome"], r
    assert (r["after_kib"] - r["before_kib"]) * 1024 < 300 * MIB, r
    assert time.perf_counter() - t < 20, r


# ---- read_upload -----------------------------------------------------------------------------------------------
@contextmanager
def no_hang(seconds: int = 5):
    """Fail instead of hanging should anything open a FIFO for reading."""
    def fail(*_):
        raise TimeoutError("blocked on a FIFO")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_read_upload_bytes_and_files(tmp_path):
    assert read_upload(b"abc") == b"abc"
    assert read_upload(memoryview(b"abc")) == b"abc"
    p = tmp_path / "a.png"
    p.write_bytes(b"x" * 1000)
    assert read_upload(p, max_bytes=1000) == b"x" * 1000
    assert read_upload(str(p)) == b"x" * 1000


def test_read_upload_refuses_oversize_before_reading(tmp_path):
    with pytest.raises(InvalidInput, match="1001 bytes; the upload limit is 1000 bytes"):
        read_upload(b"x" * 1001, max_bytes=1000)
    p = tmp_path / "big.png"
    with open(p, "wb") as f:  # a sparse 64 GiB file: reading it whole would exhaust memory
        f.truncate(64 << 30)
    t = time.perf_counter()
    limit = r"big\.png: 68719476736 bytes; the upload limit is 20971520 bytes \(20 MB\)"
    with pytest.raises(InvalidInput, match=limit):
        read_upload(p)
    assert time.perf_counter() - t < 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_read_upload_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    with no_hang(), pytest.raises(InvalidInput, match=r"photo\.png: is a FIFO \(named pipe\), not a regular file"):
        read_upload(fifo)
    with no_hang(), pytest.raises(InvalidInput, match="is a FIFO"):
        read_zip_members(fifo)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_read_upload_refuses_devices_and_links(tmp_path):
    with no_hang(), pytest.raises(InvalidInput, match="is a character device"):
        read_upload("/dev/zero")  # would never end
    (tmp_path / "real.png").write_bytes(b"1")
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")
    with pytest.raises(InvalidInput, match="is a link"):
        read_upload(tmp_path / "link.png")
    with pytest.raises(InvalidInput, match="cannot be read"):
        read_upload(tmp_path / "missing.png")


# ---- is_regular_file_inside ------------------------------------------------------------------------------------
def test_is_regular_file_inside(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a.png").write_bytes(b"1")
    (root / "sub" / "b.png").write_bytes(b"1")
    (outside / "secret.png").write_bytes(b"1")
    (root / "in.png").symlink_to(root / "sub" / "b.png")
    (root / "out.png").symlink_to(outside / "secret.png")
    (root / "dangling.png").symlink_to(root / "nothing.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(root / "fifo.png")
    with no_hang():
        assert is_regular_file_inside(root / "a.png", root)
        assert is_regular_file_inside(root / "sub" / "b.png", root)
        assert is_regular_file_inside(root / "in.png", root)
        for bad in ["out.png", "dangling.png", "loop.png", "linkdir/secret.png", "fifo.png", "sub", "none.png"]:
            assert not is_regular_file_inside(root / bad, root), bad
        assert not is_regular_file_inside("/dev/null", "/dev")


def test_is_regular_file_inside_refuses_a_socket():
    with tempfile.TemporaryDirectory(dir="/tmp") as d:  # short path: AF_UNIX names are at most 107 bytes
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(os.path.join(d, "s.png"))
            assert not is_regular_file_inside(os.path.join(d, "s.png"), d)
            with pytest.raises(InvalidInput, match="is a socket"):
                read_upload(os.path.join(d, "s.png"))
        finally:
            s.close()
