"""Reading untrusted files without letting them stall or exhaust the server.

- :func:`read_upload`: an upload (bytes or a path) of at most ``max_bytes``; the size is checked before the file
  is read whole, and anything but a regular file (a FIFO, a device, a socket, a link) is refused without being
  opened for reading, so nothing blocks.
- :func:`is_regular_file_inside`: whether a path found while walking a folder is a regular file that stays
  inside the folder (links are followed only to check where they lead).
- :func:`read_zip_members`: a zip's members inflated through a stream, with a hard cap on the bytes the stream
  actually produces. The sizes in a member's headers are an attacker's claim: ``zipfile`` trusts them, and
  ``ZipFile.read`` asks zlib for up to 1 GiB of output in one call whatever they say, so a 1 MB upload whose
  header understates its member's size raised the peak memory by about 2 GiB before the CRC check refused it (or
  was accepted, cut to the declared size, when the CRC fits the cut). Here a member is read in 1 MiB chunks and
  refused as soon as it produces more than its cap, or a different number of bytes than its header declares.

Every refusal is an :class:`~annotation.errors.InvalidInput` naming the file or member, escaped for HTML.
"""

from __future__ import annotations

import copy
import io
import os
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NamedTuple

from .errors import InvalidInput
from .text import escape_for_message, scrub_addresses

MAX_UPLOAD_BYTES = 20 << 20  # one upload (a file or a whole zip)
MAX_MEMBER_BYTES = 20 << 20  # one zip member, inflated
MAX_TOTAL_BYTES = 256 << 20  # all wanted members of one zip together, inflated
MAX_MEMBERS = 20_000
CHUNK = 1 << 20  # bytes asked of the inflating stream at a time: the most memory one step can take
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # bzip2 and lzma inflate without an output bound


def file_kind(mode: int) -> str:
    """What ``st_mode`` is, in words: "a regular file", "a FIFO", "a socket", ..."""
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a link"),
                        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "not a regular file"


def _too_big(label: str, size: int | str, limit: int) -> InvalidInput:
    return InvalidInput(f"{label}: {size} bytes; the upload limit is {limit} bytes ({limit / (1 << 20):g} MB)")


def _open_regular(path: str | os.PathLike, label: str) -> tuple[int, os.stat_result]:
    """An fd of the regular file at ``path``, never opening anything else for reading: lstat first (a FIFO,
    device, socket or link is refused before ``open``), then open without following a link and without blocking
    (in case it was swapped since) and check the opened file again."""
    try:
        st = os.lstat(path)
    except OSError as err:
        raise InvalidInput(f"{label}: cannot be read ({err.strerror or type(err).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"{label}: is {file_kind(st.st_mode)}, not a regular file; nothing was read")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as err:
        raise InvalidInput(f"{label}: cannot be read ({err.strerror or type(err).__name__})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InvalidInput(f"{label}: is {file_kind(st.st_mode)}, not a regular file; nothing was read")
    return fd, st


def read_upload(path_or_bytes: bytes | bytearray | memoryview | str | os.PathLike, *,
                max_bytes: int = MAX_UPLOAD_BYTES, name: str | None = None) -> bytes:
    """The bytes of an upload, at most ``max_bytes`` of them.

    A path must be a regular file (not a link, FIFO, device or socket); its size is checked from ``fstat``
    before reading, and the reading stops one byte past the limit should the file grow meanwhile. ``name`` is
    the file name for messages (default: the path's last part). Raises :class:`InvalidInput`.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        label = escape_for_message(name or "upload")
        size = path_or_bytes.nbytes if isinstance(path_or_bytes, memoryview) else len(path_or_bytes)
        if size > max_bytes:
            raise _too_big(label, size, max_bytes)
        return bytes(path_or_bytes)
    if not isinstance(path_or_bytes, (str, os.PathLike)):
        raise InvalidInput(f"an upload must be bytes or a path, got {type(path_or_bytes).__name__}")
    label = escape_for_message(name or Path(path_or_bytes).name)
    fd, st = _open_regular(path_or_bytes, label)
    with os.fdopen(fd, "rb", buffering=0) as f:
        if st.st_size > max_bytes:
            raise _too_big(label, st.st_size, max_bytes)
        buf = bytearray()
        while len(buf) <= max_bytes:
            chunk = f.read(min(CHUNK, max_bytes + 1 - len(buf)))
            if not chunk:
                break
            buf += chunk
    if len(buf) > max_bytes:
        raise _too_big(label, f"more than {max_bytes}", max_bytes)
    return bytes(buf)


def is_regular_file_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True iff ``path`` is a regular file, or a link to one, whose real location is inside ``root``.

    FIFOs, devices and sockets are refused from ``lstat`` alone (never opened); a link is resolved only to see
    where it leads, and refused if that is outside ``root``, missing, a loop, or not a regular file. A path whose
    parent folders are links leading out of ``root`` is refused too.
    """
    try:
        st = os.lstat(path)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            return False
        real = Path(os.path.realpath(path, strict=True))
        if not stat.S_ISREG(os.lstat(real).st_mode):
            return False
        return real.is_relative_to(Path(os.path.realpath(root, strict=True)))
    except (OSError, RuntimeError, ValueError):
        return False


# ---- zips ------------------------------------------------------------------------------------------------------
class ZipMembers(NamedTuple):
    files: list[tuple[str, bytes]]  # ("<label>:<member name>", inflated bytes) of the wanted members, in order
    skipped: list[str]  # "<label>:<member name>" of the members ``wanted`` declined


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a member's name or type is unsafe (absolute, a drive letter, a ``..`` part, a NUL, a link), or None."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")):
        return "an absolute path"
    if len(name) > 1 and name[1] == ":":
        return "a drive letter"
    if ".." in parts:
        return "a '..' part"
    if "\x00" in name:
        return "a NUL character"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return None


def _member_label(label: str, info: zipfile.ZipInfo) -> str:
    return f"{label}: member {escape_for_message(info.filename)}"


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, label: str) -> bytes:
    """The member's bytes, inflated ``CHUNK`` at a time; refused past ``limit`` bytes or if the stream's length
    differs from the header's. The header's size is not given to ``zipfile`` (it would silently cut the output
    there): it is told ``limit + 1 + CHUNK``, more than is ever asked of it (``limit + 1``, which is how an
    understated size is caught) plus what it decodes ahead (at most 4 KiB); where ``zipfile`` reaches the size it
    was told, it checks the CRC as if the stream had ended."""
    probe = copy.copy(info)
    probe.file_size = limit + 1 + CHUNK
    buf = bytearray()
    try:
        with zf.open(probe) as stream:
            while len(buf) <= limit:
                chunk = stream.read(min(CHUNK, limit + 1 - len(buf)))
                if not chunk:
                    break
                buf += chunk
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as err:
        raise InvalidInput(f"{label}: cannot be read ({type(err).__name__}: "
                           f"{escape_for_message(scrub_addresses(str(err)))}); nothing was imported") from None
    if len(buf) > limit:
        raise InvalidInput(f"{label}: inflates to more than the limit of {limit} bytes although its header says "
                           f"{info.file_size}; nothing was imported")
    if len(buf) != info.file_size:
        raise InvalidInput(f"{label}: inflates to {len(buf)} bytes but its header says {info.file_size}; "
                           "nothing was imported")
    return bytes(buf)


def _open_zip(data_or_path: bytes | bytearray | str | os.PathLike | BinaryIO,
              shown: str) -> tuple[zipfile.ZipFile, BinaryIO | None]:
    """The archive, and the file object this module opened for it (to close), if any."""
    owned: BinaryIO | None = None
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        fileobj: BinaryIO = io.BytesIO(data_or_path)
    elif isinstance(data_or_path, (str, os.PathLike)):
        fd, _ = _open_regular(data_or_path, shown)
        fileobj = owned = os.fdopen(fd, "rb")
    else:
        fileobj = data_or_path
    try:
        return zipfile.ZipFile(fileobj), owned
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
        if owned is not None:
            owned.close()
        raise InvalidInput(f"{shown}: not a readable zip archive ({type(err).__name__}: "
                           f"{escape_for_message(scrub_addresses(str(err)))})") from None


def read_zip_members(data_or_path: bytes | bytearray | str | os.PathLike | BinaryIO, *,
                     max_member_bytes: int = MAX_MEMBER_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES,
                     max_members: int = MAX_MEMBERS, wanted: Callable[[str], bool] | None = None,
                     label: str = "zip") -> ZipMembers:
    """Inflate the members of a zip (bytes, a path to a regular file, or an open binary file) that ``wanted``
    accepts (given the member's name; default: every file member), all or nothing.

    Refuses the whole archive (:class:`InvalidInput`, naming the member, escaped) if it is not a zip, has more
    than ``max_members`` members, any member with an unsafe name or type (:func:`unsafe_member`), two members
    sharing their data (overlapping entries, a known zip-bomb construction), or a wanted member that is
    encrypted, compressed other than stored/deflate, declares or produces more than ``max_member_bytes``, makes
    the wanted members declare or produce more than ``max_total_bytes`` in all, produces a different number of
    bytes than its header declares, or fails its CRC. Memory: at most ``max_total_bytes`` of results plus one
    member's ``max_member_bytes`` buffer and one ``CHUNK``, whatever the headers claim.
    """
    shown = escape_for_message(label)
    zf, owned = _open_zip(data_or_path, shown)
    try:
        with zf:
            take, skipped = _plan(zf.infolist(), shown, wanted, max_member_bytes, max_total_bytes, max_members)
            files, total = [], 0
            for info in take:
                limit = min(max_member_bytes, max_total_bytes - total)
                data = _inflate(zf, info, limit, _member_label(shown, info))
                total += len(data)
                files.append((f"{label}:{info.filename}", data))
    finally:
        if owned is not None:
            owned.close()
    return ZipMembers(files, [f"{label}:{i.filename}" for i in skipped])


def _plan(infos: list[zipfile.ZipInfo], shown: str, wanted: Callable[[str], bool] | None, max_member_bytes: int,
          max_total_bytes: int, max_members: int) -> tuple[list[zipfile.ZipInfo], list[zipfile.ZipInfo]]:
    """The members to inflate and those skipped, after every check the central directory allows (cheap
    refusals before any inflating; the headers' sizes are checked again against what the streams produce)."""
    if len(infos) > max_members:
        raise InvalidInput(f"{shown}: {len(infos)} members is more than the limit of {max_members}")
    for info in infos:
        why = unsafe_member(info)
        if why:
            raise InvalidInput(f"{_member_label(shown, info)}: {why}; nothing was imported")
    files = [i for i in infos if not i.is_dir()]
    offsets: dict[int, zipfile.ZipInfo] = {}
    for info in files:
        if info.header_offset in offsets:
            raise InvalidInput(f"{_member_label(shown, info)}: shares its data with member "
                               f"{escape_for_message(offsets[info.header_offset].filename)} (overlapping entries); "
                               "nothing was imported")
        offsets[info.header_offset] = info
    take = [i for i in files if wanted is None or wanted(i.filename)]
    skipped = [i for i in files if wanted is not None and not wanted(i.filename)]
    for info in take:
        what = _member_label(shown, info)
        if info.flag_bits & 0x1:
            raise InvalidInput(f"{what}: is encrypted; nothing was imported")
        if info.compress_type not in _COMPRESSIONS:
            raise InvalidInput(f"{what}: compression method {info.compress_type} is not accepted (stored or "
                               "deflate only); nothing was imported")
        if info.file_size > max_member_bytes:
            raise InvalidInput(f"{what}: {info.file_size} bytes is more than the limit of {max_member_bytes}; "
                               "nothing was imported")
    declared = sum(i.file_size for i in take)
    if declared > max_total_bytes:
        raise InvalidInput(f"{shown}: unpacks to {declared} bytes, more than the limit of {max_total_bytes}; "
                           "nothing was imported")
    return take, skipped


__all__ = ["CHUNK", "MAX_MEMBERS", "MAX_MEMBER_BYTES", "MAX_TOTAL_BYTES", "MAX_UPLOAD_BYTES", "ZipMembers",
           "file_kind", "is_regular_file_inside", "read_upload", "read_zip_members", "unsafe_member"]
