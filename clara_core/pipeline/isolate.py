"""`clara run --isolate`: the declared container paths become real mount points, so an
unmodified operator that opens /input or writes /output works, and the host is untouched.

Each operator runs in a mount namespace of its own (and a user namespace when not root).
Its root is a fresh tmpfs (mounted on an empty folder of the job directory, unbindable so
it never appears inside itself) holding a bind mount of every entry of the real root,
except where a declared path must be: there the path's local folder is bound, read-only
for inputs. A declared path under an existing directory (/app/out) rebuilds that
directory the same way one level down. The tmpfs and every mount exist only in the
operator's namespace and vanish with it: nothing is created outside the job directory.

    argv = wrap(argv, mounts, root, cwd)   # python -m clara_core.pipeline.isolate SPEC -- ARGV
    reason = unavailable()                 # None where this machine allows it

This is a path mapping, not a security boundary: the operator keeps the runner's uid and
sees the same files as the runner.
"""

from __future__ import annotations

import ctypes
import json
import os
import posixpath
import subprocess
import sys
from collections.abc import Sequence

CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_UNBINDABLE, MS_PRIVATE, MS_RELATIME = 1 << 17, 1 << 18, 1 << 21
# statvfs flags that a read-only remount must repeat (the kernel refuses to drop locked ones)
_KEPT = ((2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC), (1024, MS_NOATIME), (2048, MS_NODIRATIME))
_ST_RELATIME = 4096
_unavailable: list[str | None] = []


def wrap(
    argv: Sequence[str], mounts: Sequence[tuple[str, str, bool]], root: str, cwd: str
) -> list[str]:
    """The command line that runs `argv` with each (container path, local folder,
    read-only) mounted, its root built on the empty directory `root`."""
    spec = {"root": root, "cwd": cwd, "mounts": [list(m) for m in mounts]}
    return [sys.executable, "-m", __name__, json.dumps(spec), "--", *argv]


def unavailable() -> str | None:
    """Why --isolate cannot work on this machine, or None if it can (probed once)."""
    if not _unavailable:
        import tempfile

        directory = tempfile.mkdtemp(prefix="clara-isolate-probe-")
        try:
            probe = subprocess.run(
                [sys.executable, "-m", __name__, "--probe", directory],
                capture_output=True,
                text=True,
            )
        finally:
            os.rmdir(directory)  # the probe's mount was in its own namespace only
        reason = probe.stderr.strip().splitlines()[-1:] or [f"probe exited {probe.returncode}"]
        _unavailable.append(None if probe.returncode == 0 else reason[0])
    return _unavailable[0]


# -- inside the operator's process (python -m clara_core.pipeline.isolate) ----------------

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source or ''} on {target}",
    )


def _enter_namespace() -> None:
    """A private mount namespace (in a user namespace of our own when not root)."""
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | (0 if uid == 0 else CLONE_NEWUSER)
    _check(_libc.unshare(flags), "unshare (mount namespace)")
    if uid != 0:  # same ids inside: the operator keeps its uid, loses the capabilities at exec
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def _new_root(root: str) -> None:
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    _mount(None, root, None, MS_UNBINDABLE)  # recursive binds of its parents skip it


def _mirror(host_dir: str, root: str, targets: set[str], ancestors: set[str]) -> None:
    """Bind every entry of `host_dir` into the new root, rebuilding ancestors of targets."""
    for entry in os.scandir(host_dir):
        host = posixpath.join(host_dir, entry.name)
        new = root + host
        if host in targets:
            continue  # its local folder is mounted there afterwards
        try:
            if host in ancestors:
                if entry.is_dir(follow_symlinks=False):
                    os.mkdir(new)
                    _mirror(host, root, targets, ancestors)
                continue  # not a directory here: the declared path is made of plain folders
            if entry.is_symlink():
                os.symlink(os.readlink(host), new)
            elif entry.is_dir(follow_symlinks=False):
                os.mkdir(new)
                _mount(host, new, None, MS_BIND | MS_REC)
            else:
                open(new, "w").close()
                _mount(host, new, None, MS_BIND)
        except OSError:
            continue  # vanished meanwhile, or not bindable here: left out of the view


def _bind(local: str, target: str, read_only: bool) -> None:
    os.makedirs(target, exist_ok=True)
    _mount(local, target, None, MS_BIND | MS_REC)
    if read_only:
        flag = os.statvfs(target).f_flag
        kept = sum(ms for st, ms in _KEPT if flag & st)
        kept |= MS_RELATIME if flag & _ST_RELATIME else 0
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def _enter(spec: dict) -> None:
    """Build the operator's view of the file system and enter it."""
    root = spec["root"]
    mounts = sorted(
        ((posixpath.normpath(c), local, ro) for c, local, ro in spec["mounts"]),
        key=lambda m: m[0].count("/"),
    )
    if any(c == "/" for c, _, _ in mounts):
        raise OSError(0, "the container path / cannot be a mount point")
    targets = {c for c, _, _ in mounts}
    ancestors = set()
    for target in targets:
        parent = posixpath.dirname(target)
        while parent != "/":
            ancestors.add(parent)
            parent = posixpath.dirname(parent)
    _enter_namespace()
    _new_root(root)
    _mirror("/", root, targets, ancestors)
    for container, local, read_only in mounts:
        _bind(local, root + container, read_only)
    os.chroot(root)
    os.chdir(spec["cwd"])


def main(args: list[str]) -> int:
    """`--probe DIR` (can a root be built on the empty DIR?), or `SPEC -- ARGV...`: enter
    the view described by SPEC, then exec ARGV."""
    try:
        if len(args) == 2 and args[0] == "--probe":
            _enter_namespace()
            _new_root(args[1])
            return 0
        if len(args) < 3 or args[1] != "--":
            print("usage: python -m clara_core.pipeline.isolate SPEC -- ARGV...", file=sys.stderr)
            return 2
        _enter(json.loads(args[0]))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"clara: error: --isolate is not possible here: {reason}", file=sys.stderr)
        return 126
    argv = args[2:]
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"clara: error: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
