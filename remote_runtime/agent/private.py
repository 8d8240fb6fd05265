"""Directories only this user may change: the agent's cache, its envs and its runs.

A directory another user owns, or one that its group or others can write, could
hold a planted venv or server config that we would then run: refuse it with one
line that says how to fix it, before anything in it is used.
"""

import os
import stat


class Refusal(Exception):
    """The remote refuses to go on (an unsafe directory); `main` answers with it."""

    def __init__(self, message, hint=None):
        Exception.__init__(self, message)
        self.message = message
        self.hint = hint


def check_dir(path):
    """Raise Refusal unless `path` (and, for a symlink, the link itself) is ours alone."""
    uid = os.getuid()
    link = os.lstat(path)
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (uid, 0):
        raise Refusal(
            "%s is a symlink made by another user (uid %d); remote-runtime will not use it"
            % (path, link.st_uid),
            hint="remove it on the remote host, or point XDG_CACHE_HOME at a private directory")
    st = os.stat(path)
    if st.st_uid != uid:
        raise Refusal(
            "%s belongs to another user (uid %d, you are uid %d); remote-runtime will not "
            "run anything from it" % (path, st.st_uid, uid),
            hint="remove it on the remote host, or point XDG_CACHE_HOME at a private directory")
    writable = [who for who, bit in (("its group", stat.S_IWGRP), ("others", stat.S_IWOTH))
                if st.st_mode & bit]
    if writable:
        raise Refusal(
            "%s is writable by %s (mode %04o): another user could plant files that "
            "remote-runtime would run" % (path, " and ".join(writable), stat.S_IMODE(st.st_mode)),
            hint="on the remote host: chmod go-w %s" % path)


def check_tree(base, subdirs=("envs", "runs")):
    """The base dir, the given subdirs and the directories directly inside them."""
    check_dir(base)
    for sub in subdirs:
        path = os.path.join(base, sub)
        if not os.path.isdir(path):
            continue
        check_dir(path)
        for name in os.listdir(path):
            child = os.path.join(path, name)
            if os.path.isdir(child):
                check_dir(child)


def make_private_dir(path):
    """Create `path` (mode 0700) or check an existing one; return it."""
    try:
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        pass
    check_dir(path)
    os.chmod(path, 0o700)
    return path
