"""Writing a file so that an interruption never leaves half of it behind: write under a temporary
name beside it, then rename (a rename within a folder replaces the old file in one step)."""
import contextlib
import os

PARTIAL_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_path(path, temporary=None):
    """Yields the temporary name to write (default: path + '.partial'); once the block ends without
    an error it replaces `path`, otherwise it is removed and `path` is left as it was."""
    temporary = path + PARTIAL_SUFFIX if temporary is None else temporary
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_atomically(path, text):
    """Write `text` (UTF-8) to `path` through atomic_path."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)
