"""Files that hold secrets, readable by their owner only.

The SQLite database holds the token signing secret and every hash; the data directory
may also hold the generated admin password. Any local account that can read them can
mint an admin token, so Tether creates the directory 0700 and its files 0600 (whatever
the umask), and :func:`loose_permissions` names the ones an operator has since opened
up, for a warning at start. It does not tighten them itself: a group-readable backup
set-up may be deliberate.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

#: Where the first admin's generated password is written, inside the data directory.
ADMIN_PASSWORD_FILE = "admin-password"
#: SQLite's companions of a database file, which hold the same data.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) as 0700; an existing one is left as it is."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask


def private_file(path: Path) -> None:
    """Create an empty ``path`` as 0600 if it does not exist.

    SQLite creates its ``-wal`` and ``-shm`` files with the mode of the database file, so
    a database file made here keeps all three private.
    """
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.fchmod(fd, 0o600)
    os.close(fd)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (replacing it), readable by this user only."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def sqlite_files(database: Path) -> list[Path]:
    """A SQLite database file and the companions that may exist beside it."""
    return [database, *(database.with_name(database.name + s) for s in SQLITE_SIDE_FILES)]


def loose_permissions(paths: Iterable[Path]) -> list[tuple[Path, int]]:
    """Those of ``paths`` that exist and that other users or the group can access."""
    found = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            found.append((path, mode))
    return found


def secret_files(data_dir: Path, database_url: str) -> list[Path]:
    """Every path Tether keeps secrets in: the data directory, the generated admin
    password, and the SQLite database with its companions (when SQLite is used)."""
    from sqlalchemy.engine import make_url

    paths = [data_dir, data_dir / ADMIN_PASSWORD_FILE]
    url = make_url(database_url)
    database = url.database or ":memory:"
    if url.get_backend_name() == "sqlite" and not database.startswith((":memory:", "file:")):
        paths += sqlite_files(Path(database).expanduser().resolve())
    return paths
