"""SFTP transport: push bundles to, and pull them from, a staging server (e.g. in a DMZ).

Locations are ``sftp://USER@HOST[:PORT]/ABSOLUTE/PATH``; :class:`TransportOptions` must give
``identity_file`` (the login key) and ``known_hosts`` (the pinned host key). Connecting, retrying
and host key pinning live in :mod:`relay.transport.sftp_session`; this module moves files.

- ``put`` writes ``.relay-tmp.<random>.<name>.part`` in the target folder (pipelined writes,
  ``fsync@openssh.com`` when offered), checks its size, then renames it over the final name with
  ``posix-rename@openssh.com``: a reader sees the whole bundle or nothing. A killed upload leaves
  only such a dot file, which readers ignore; the first successful put of a later destination
  deletes those older than ``stale_temp_age`` seconds (default 900) by the server's clock.
- ``fetch`` ``lstat``\\ s first and never follows links: a link or other non-regular entry is
  ``not_regular_file``, a size over the cap is ``too_large`` before any byte is read, and at most
  ``max_bytes + 1`` bytes are ever requested, even from a file that grows.

Error codes (``TransportError``) besides those of the session: ``remote_missing`` (the folder or
file is not there, or the folder is not a folder), ``remote_denied`` (the server refused
permission: read-only account, folder not writable), ``connection_lost`` (the connection broke
or timed out during a transfer; nothing partial is returned or published), ``remote_failed``
(any other SFTP failure).

Options in ``TransportOptions.extra``: ``connect_attempts`` (4), ``retry_base`` (0.5 s),
``retry_cap`` (8 s), ``retry_cooldown`` (60 s), ``connect_timeout`` (10 s), ``io_timeout``
(60 s), ``stale_temp_age`` (900 s).
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import secrets
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

from relay.codes import BAD_VALUE, CONNECTION_LOST, REMOTE_DENIED, REMOTE_FAILED, REMOTE_MISSING
from relay.errors import NOT_REGULAR_FILE, TOO_LARGE, BundleRejected, TransportError, UsageError
from relay.transport.base import BUNDLE_SUFFIX, Pending, TransportOptions
from relay.transport.progress import ProgressFactory, terminal_progress
from relay.transport.retry import RetryPolicy
from relay.transport.sftp_session import SftpSession, parse_location

if TYPE_CHECKING:
    from paramiko.sftp_attr import SFTPAttributes
    from paramiko.sftp_client import SFTPClient
    from paramiko.sftp_file import SFTPFile

TEMP_PREFIX = ".relay-tmp."
TEMP_SUFFIX = ".part"
CHUNK = 1024 * 1024
# One SFTP write per SSH packet: the channel sends at most (max packet - 64) bytes at a time and
# OpenSSH offers 32 KiB packets, so 32 KiB of data plus the request header would take two.
WRITE_REQUEST = 32768 - 128
BUNDLE_MODE = 0o640
# Downloads: 64 KiB per read request, the most every OpenSSH sftp-server has answered in full
# (newer ones answer up to 255 KiB; a server that answers less is still read correctly: paramiko
# falls back to plain reads for the rest). Half the requests, answers and packets of 32 KiB.
READ_REQUEST = 64 * 1024


class _SftpEndpoint:
    def __init__(
        self,
        location: str,
        options: TransportOptions,
        *,
        retry: RetryPolicy | None = None,
        progress: ProgressFactory = terminal_progress,
    ) -> None:
        self.location = parse_location(location)
        self.session = SftpSession(self.location, options, retry)
        self.progress = progress
        self.stale_temp_age = _positive(options.extra, "stale_temp_age", 900)

    @contextlib.contextmanager
    def _remote(self, action: str, path: str) -> Iterator[None]:
        """Turn paramiko's errors during ``action`` on ``path`` into one-line TransportErrors."""
        from paramiko.ssh_exception import SSHException

        try:
            yield
        except (TransportError, BundleRejected, UsageError):
            raise
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise TransportError(
                    f"{action}: {self._at(path)} does not exist", code=REMOTE_MISSING
                ) from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise TransportError(
                    f"{action}: permission denied on {self._at(path)}", code=REMOTE_DENIED
                ) from None
            self._lost_or_failed(action, path, exc)
        except (SSHException, EOFError) as exc:
            self._lost_or_failed(action, path, exc)

    def _lost_or_failed(self, action: str, path: str, exc: BaseException) -> None:
        cause = " ".join((str(exc) or type(exc).__name__).split()).rstrip(":")
        if _ended_by_eof(exc) or not self.session.is_alive():
            self.session.close()
            raise TransportError(
                f"{action}: connection to {self.location.address} lost ({cause})",
                code=CONNECTION_LOST,
            ) from None
        raise TransportError(f"{action}: {self._at(path)}: {cause}", code=REMOTE_FAILED) from None

    def _at(self, path: str) -> str:
        return f"{self.location.address}:{path}"

    def _folder_attrs(self, sftp: SFTPClient, action: str) -> SFTPAttributes:
        path = self.location.path
        with self._remote(action, path):
            return sftp.stat(path)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the connection; idempotent."""
        self.session.close()


class SftpDestination(_SftpEndpoint):
    """Writes bundles into a folder on an SFTP server, atomically."""

    _folder_checked = False  # the target folder exists (checked on the first put)
    _cleaned = False  # stale temp files were looked for (after the first put)

    def put(self, name: str, data: bytes) -> str:
        if "/" in name or name.startswith(".") or not name or "\x00" in name:
            raise ValueError(f"unsafe file name {name!r}")
        sftp = self.session.client()
        folder = self.location.path
        if not self._folder_checked:
            if not stat.S_ISDIR(self._folder_attrs(sftp, "upload").st_mode or 0):
                raise TransportError(
                    f"upload: {self._at(folder)} is not a folder", code=REMOTE_MISSING
                )
            self._folder_checked = True
        temp = posixpath.join(folder, f"{TEMP_PREFIX}{secrets.token_hex(6)}.{name}{TEMP_SUFFIX}")
        final = posixpath.join(folder, name)
        with self._remote("upload", temp):
            server_now = self._upload(sftp, temp, data, name)
        with self._remote("rename", final):
            sftp.posix_rename(temp, final)
        if not self._cleaned:
            self._clean_stale(sftp, server_now)
            self._cleaned = True
        return f"sftp://{self.location.user}@{self.location.address}{final}"

    def _upload(self, sftp: SFTPClient, temp: str, data: bytes, name: str) -> int:
        """Write ``temp`` completely; returns its mtime (the server's clock, for cleaning).

        Round trips per file: open (created with mode 0640), the pipelined writes, close (the
        fsync request goes just before it and is answered first), stat (size and mode; a chmod
        only if the server's umask narrowed the mode), and the caller's rename.
        """
        progress = self.progress(f"upload {name}", len(data))
        try:
            with _open_new(sftp, temp, BUNDLE_MODE) as handle:
                handle.set_pipelined(True)
                handle.MAX_REQUEST_SIZE = WRITE_REQUEST
                view = memoryview(data)
                for start in range(0, len(data), CHUNK):
                    handle.write(view[start : start + CHUNK])
                    progress.advance(min(CHUNK, len(data) - start))
                handle.flush()
                _request_fsync(sftp, handle)
            attrs = sftp.stat(temp)
            if (attrs.st_mode or 0) & 0o7777 != BUNDLE_MODE:
                sftp.chmod(temp, BUNDLE_MODE)
        except BaseException:
            if self.session.is_alive():
                with contextlib.suppress(Exception):
                    sftp.remove(temp)
            raise
        finally:
            progress.close()
        if attrs.st_size != len(data):
            raise TransportError(
                f"upload: {self._at(temp)} has {attrs.st_size} bytes, sent {len(data)}",
                code=REMOTE_FAILED,
            )
        return int(attrs.st_mtime or 0)

    def _clean_stale(self, sftp: SFTPClient, server_now: int) -> None:
        """Delete our temp files that a killed upload left, older than ``stale_temp_age``."""
        folder = self.location.path
        with contextlib.suppress(Exception):
            for attrs in sftp.listdir_attr(folder):
                name = attrs.filename
                old = (attrs.st_mtime or 0) < server_now - self.stale_temp_age
                if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX) and old:
                    sftp.remove(posixpath.join(folder, name))


class SftpSource(_SftpEndpoint):
    """Reads bundles from a folder (or one named file) on an SFTP server."""

    def list_pending(self) -> list[Pending]:
        sftp = self.session.client()
        path = self.location.path
        attrs = self._folder_attrs(sftp, "list")
        if not stat.S_ISDIR(attrs.st_mode or 0):
            return [
                Pending(name=posixpath.basename(path), ref=path, size=attrs.st_size, explicit=True)
            ]
        with self._remote("list", path):
            entries = sftp.listdir_attr(path)
        return sorted(
            (
                Pending(name=e.filename, ref=posixpath.join(path, e.filename), size=e.st_size)
                for e in entries
                if is_bundle_name(e.filename)
            ),
            key=lambda item: item.name,
        )

    def fetch(self, item: Pending, max_bytes: int) -> bytes:
        from paramiko.sftp import CMD_FSTAT

        sftp = self.session.client()
        with self._remote("download", item.ref):
            listed = _check_entry(item.name, sftp.lstat(item.ref), max_bytes)
            handle = sftp.open(item.ref, "rb")
            try:
                # fstat of the open handle and the first reads (sized by the lstat, capped) go
                # out together: one round trip, and the reads are only kept if fstat agrees.
                handle.MAX_REQUEST_SIZE = READ_REQUEST
                fstat = sftp._async_request(type(None), CMD_FSTAT, handle.handle)  # type: ignore[attr-defined]
                _contain_prefetch_errors(handle)
                handle.prefetch(min(listed, max_bytes + 1))
                size = _check_entry(item.name, _attributes(sftp, fstat), max_bytes)
                data = self._read_capped(handle, item.name, size, max_bytes)
            finally:
                with contextlib.suppress(Exception):  # the close's answer is read with the next
                    handle._close(async_=True)  # type: ignore[attr-defined]
        if len(data) > max_bytes:
            raise BundleRejected(
                f"{item.name} grew over the cap of {max_bytes} bytes", code=TOO_LARGE
            )
        return data

    def fetch_head(self, item: Pending, limit: int) -> bytes:
        """The first ``limit`` bytes (header and signature): one small read, not the file."""
        sftp = self.session.client()
        with self._remote("download", item.ref):
            _check_entry(item.name, sftp.lstat(item.ref), None)
            with sftp.open(item.ref, "rb") as handle:
                _check_entry(item.name, handle.stat(), None)
                chunks: list[bytes] = []
                got = 0
                while got < limit:
                    chunk = handle.read(limit - got)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    got += len(chunk)
        return b"".join(chunks)

    def _read_capped(self, handle: SFTPFile, name: str, size: int, max_bytes: int) -> bytes:
        """At most ``max_bytes + 1`` bytes of ``handle`` (prefetched by the caller up to the size
        listed; a file that grew since is read on, up to the cap, with plain reads)."""
        limit = max_bytes + 1
        progress = self.progress(f"download {name}", size)
        chunks: list[bytes] = []
        got = 0
        try:
            while got < limit:
                chunk = handle.read(min(CHUNK, limit - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
                progress.advance(len(chunk))
        finally:
            progress.close()
        return b"".join(chunks)

    def remove(self, item: Pending) -> None:
        sftp = self.session.client()
        with self._remote("remove", item.ref):
            try:
                sftp.remove(item.ref)
            except FileNotFoundError:
                return  # already consumed: removing is idempotent


def _ended_by_eof(exc: BaseException) -> bool:
    """``exc`` is, or was raised while handling, an end of file or a timeout. paramiko reports a
    dead connection as ``SSHException("Server connection dropped")`` raised from the EOFError of
    whichever read or write met it first (a window adjust sent while reading, say), possibly
    before its transport thread has noticed: the chain tells, not the transport's state."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, (EOFError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_bundle_name(name: str) -> bool:
    """A listed name we pick up: ``*.bundle``, not a dot file, and a plain base name (a hostile
    server could list ``../x.bundle``; the name is later used for local files)."""
    return (
        name.endswith(BUNDLE_SUFFIX)
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
    )


def _check_entry(name: str, attrs: SFTPAttributes, max_bytes: int | None) -> int:
    if attrs.st_mode is None or not stat.S_ISREG(attrs.st_mode):
        raise BundleRejected(f"{name} is not a regular file", code=NOT_REGULAR_FILE)
    size = attrs.st_size or 0
    if max_bytes is not None and size > max_bytes:
        raise BundleRejected(f"{name} is {size} bytes, over the cap of {max_bytes}", code=TOO_LARGE)
    return size


def _contain_prefetch_errors(handle: SFTPFile) -> None:
    """Keep a connection drop in paramiko's prefetch thread from printing a traceback.

    paramiko sends prefetch requests from a helper thread (``SFTPFile._prefetch_thread``); when
    the connection dies while it is still sending, the thread's exception went to
    ``threading.excepthook``, i.e. a traceback on stderr. The reading thread sees the same failure
    and reports it as ``connection_lost``, so the helper's copy is dropped. If a paramiko version
    names the method differently, nothing is wrapped and only the stray traceback comes back.
    """
    from paramiko.ssh_exception import SSHException

    send_requests = getattr(handle, "_prefetch_thread", None)
    if send_requests is None:
        return

    def contained(*args: object) -> None:
        with contextlib.suppress(OSError, EOFError, SSHException):
            send_requests(*args)

    handle._prefetch_thread = contained  # type: ignore[attr-defined]


def _open_new(sftp: SFTPClient, path: str, mode: int) -> SFTPFile:
    """``sftp.open(path, "wbx")`` with the permissions in the OPEN request itself (one round
    trip instead of open + fchmod; the server's umask may still narrow them)."""
    from paramiko.sftp import (
        CMD_HANDLE,
        CMD_OPEN,
        SFTP_FLAG_CREATE,
        SFTP_FLAG_EXCL,
        SFTP_FLAG_TRUNC,
        SFTP_FLAG_WRITE,
        SFTPError,
    )
    from paramiko.sftp_attr import SFTPAttributes
    from paramiko.sftp_file import SFTPFile

    attrs = SFTPAttributes()
    attrs.st_mode = mode
    flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC | SFTP_FLAG_EXCL
    kind, msg = sftp._request(CMD_OPEN, path, flags, attrs)  # type: ignore[attr-defined]
    if kind != CMD_HANDLE:
        raise SFTPError("Expected handle")
    return SFTPFile(sftp, msg.get_binary(), "wbx", -1)


def _request_fsync(sftp: SFTPClient, handle: SFTPFile) -> None:
    """Ask the server to fsync (OpenSSH's ``fsync@openssh.com``) without waiting: SFTP servers
    answer in order, so the close that follows returns only after the fsync ran. As before, a
    server that does not offer it (or fails it) is not an error: its answer is not read."""
    from paramiko.sftp import CMD_EXTENDED

    sftp._async_request(type(None), CMD_EXTENDED, "fsync@openssh.com", handle.handle)  # type: ignore[attr-defined]


def _attributes(sftp: SFTPClient, request: int) -> SFTPAttributes:
    """The answer to an FSTAT sent with ``_async_request``."""
    from paramiko.sftp import CMD_ATTRS, SFTPError
    from paramiko.sftp_attr import SFTPAttributes

    kind, msg = sftp._read_response(request)  # type: ignore[attr-defined]
    if kind != CMD_ATTRS:
        raise SFTPError("Expected attributes")
    attrs: SFTPAttributes = SFTPAttributes._from_msg(msg)  # type: ignore[attr-defined]
    return attrs


def _positive(extra: dict[str, str], key: str, default: int) -> int:
    text = extra.get(key)
    if text is None:
        return default
    if not text.isdigit():
        raise UsageError(f"{key}={text!r} must be a whole number of seconds", code=BAD_VALUE)
    return int(text)
