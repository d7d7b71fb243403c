"""Reading documents from disk for ``genzoo rag index``: regular files only, size checked first.

A path named on the command line must be a regular file (or a folder); anything else (a FIFO, a
character device such as /dev/zero, a socket, a file under /proc, /sys or /dev) is refused with a
clear error before anything is read, since reading it could block forever (a FIFO with no writer)
or never end (/dev/zero). A folder walk skips such entries with a note instead, as it skips files
that are too large or not UTF-8. The size is taken from ``os.stat`` before reading; the file is
then opened non-blocking (so a path swapped for a FIFO after the check still cannot hang),
checked again on the open descriptor, and read at most ``max_bytes + 1`` bytes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from genzoo.core.errors import GenzooError

PSEUDO_ROOTS = ("/proc", "/sys", "/dev")  # kernel file systems: sizes lie, reads may block or never end


def shown(path) -> str:
    """A path as text that any output can print (bytes that are not UTF-8 as \\udcff escapes)."""
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


class Skip(Exception):
    """Why one file is not read (a note in the report, not an error)."""


def _what(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _pseudo(path: Path) -> bool:
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return False
    return any(real == root or real.startswith(root + "/") for root in PSEUDO_ROOTS)


def _check_regular(path: Path, max_bytes: int) -> None:
    """Raise ``Skip`` unless ``path`` is a readable-looking regular file of at most ``max_bytes``."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise Skip("its name is not valid UTF-8; rename it") from None
    try:
        st = os.stat(path)
    except OSError as e:
        raise Skip(e.strerror or str(e)) from None
    if not stat.S_ISREG(st.st_mode):
        raise Skip(f"{_what(st.st_mode)}, not a regular file: not read")
    if _pseudo(path):
        raise Skip(f"under {'/'.join(Path(os.path.realpath(path)).parts[:2])[1:]}, a kernel file system: not read")
    if st.st_size > max_bytes:
        raise Skip(f"too large ({st.st_size:,} bytes; at most {max_bytes:,} are indexed)")


def read_text(path: Path, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``; ``Skip`` says why not."""
    _check_regular(path, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise Skip(e.strerror or str(e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped since the check
            raise Skip(f"{_what(st.st_mode)}, not a regular file: not read")
        if st.st_size > max_bytes:
            raise Skip(f"too large ({st.st_size:,} bytes; at most {max_bytes:,} are indexed)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise Skip(e.strerror or str(e)) from None
    finally:
        os.close(fd)
    if len(raw) > max_bytes:  # grew since the check
        raise Skip(f"too large (over {max_bytes:,} bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Skip(f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def document_files(paths, suffixes: tuple[str, ...], skipped: list[str]) -> list[Path]:
    """The files to index: each named file (checked: a non-regular one is refused with an error),
    and in each named folder the files with one of ``suffixes``, recursively, hidden ones left out
    (a non-regular entry there is skipped with a note in ``skipped``)."""
    out: list[Path] = []
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]  # one path, not its characters
    try:
        paths = list(paths)
        if any(isinstance(p, str) and not p.strip() for p in paths):
            raise GenzooError("an empty path names no file (it would mean the current folder); give files or folders")
        paths = [Path(p) for p in paths]
    except TypeError:
        raise GenzooError(f"give a list of files or folders (paths), got {paths!r}") from None
    for p in paths:
        if "\x00" in str(p):
            raise GenzooError(f"{shown(p)!r} holds a NUL character: not a path")
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise GenzooError(f"{p} does not exist; give files or folders of .txt, .md, .rst or .py") from None
        except OSError as e:
            raise GenzooError(f"cannot read {p}: {e.strerror or e}") from None
        if stat.S_ISDIR(st.st_mode):
            if _pseudo(p):
                raise GenzooError(f"{p} is in a kernel file system (/proc, /sys, /dev): its files are not documents")
            for f in sorted(_walk(p)):
                rel = f.relative_to(p).parts
                if f.suffix.lower() not in suffixes or any(part.startswith(".") for part in rel):
                    continue
                try:
                    _check_regular(f, float("inf"))
                except Skip as e:
                    skipped.append(f"{shown(f)}: {e}")
                    continue
                out.append(f)
        else:
            try:
                _check_regular(p, float("inf"))  # size: read_text says, as a note
            except Skip as e:
                raise GenzooError(f"{shown(p)}: {e}; give regular files or folders") from None
            out.append(p)
    return out


def _walk(root: Path) -> Iterator[Path]:
    """Every non-folder entry under ``root``, hidden folders left out; symbolic links to folders are
    not followed (no loops), as ``Path.rglob`` did."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not _pseudo(Path(dirpath) / d)]  # not /proc, /sys, /dev
        for name in filenames:
            yield Path(dirpath) / name


def read_documents(paths, suffixes: tuple[str, ...], max_bytes: int, skipped: list[str]) -> Iterator[tuple[Path, str]]:
    """(path, text) for each file to index; a file that cannot be read as text is noted in ``skipped``."""
    for f in document_files(paths, suffixes, skipped):
        try:
            yield f, read_text(f, max_bytes)
        except Skip as e:
            skipped.append(f"{shown(f)}: {e}")
