"""The doctor's checks of the machine, each one function returning one `Check`."""

from __future__ import annotations

import glob
import os
import resource
from dataclasses import dataclass, field

from ..dtypes import format_size
from ..leaks import check as check_leaks
from ..names import namespace
from ..shm import native, system

PASS, WARN, FAIL = "pass", "warn", "fail"
SEVERITY = {PASS: 0, WARN: 1, FAIL: 2}  # also `clara doctor`'s exit code

DOCKER_DEFAULT = 64 << 20
MIN_OPEN_FILES = 1024
LOGIND_DIRS = (  # drop-in directories, lowest priority first (systemd.unit(5) order)
    "/usr/lib/systemd/logind.conf.d",
    "/usr/local/lib/systemd/logind.conf.d",
    "/run/systemd/logind.conf.d",
    "/etc/systemd/logind.conf.d",
)
LOGIND_BINARIES = ("/usr/lib/systemd/systemd-logind", "/lib/systemd/systemd-logind")


@dataclass(frozen=True)
class Check:
    """One finding: its id, pass/warn/fail, what was found, and the fix if it did not pass."""

    name: str
    status: str
    message: str
    fix: str = ""
    figures: dict[str, object] = field(default_factory=dict)


def shm_directory(directory: str) -> Check:
    """It exists, is a directory we may use, is a tmpfs, and is sticky if world-writable."""
    name = "shm-dir"
    where = "CLARA_SHM_DIR" if os.environ.get("CLARA_SHM_DIR") else "the default"
    if not os.path.isdir(directory):
        return Check(
            name,
            FAIL,
            f"{directory} ({where}) does not exist or is not a directory",
            f"mount a tmpfs there (mount -t tmpfs -o size=50%,mode=1777 tmpfs {directory}) "
            "or point CLARA_SHM_DIR at one",
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        return Check(
            name,
            FAIL,
            f"{directory} is not writable by uid {os.geteuid()}",
            f"chmod 1777 {directory} (world-writable and sticky, like /dev/shm)",
        )
    mount = system.mount_of(directory)
    fstype = mount.fstype if mount else "unknown"
    figures = {"path": directory, "fstype": fstype, "mount_point": mount and mount.mount_point}
    mode = os.stat(directory).st_mode
    if mode & 0o002 and not mode & 0o1000:
        return Check(
            name,
            FAIL,
            f"{directory} is world-writable without the sticky bit: any "
            "user can delete or replace anyone's segments",
            f"chmod +t {directory}",
            figures,
        )
    if fstype != "tmpfs":
        return Check(
            name,
            WARN,
            f"{directory} is on {fstype}, not tmpfs: segments are written "
            "back to a disk (slower, and they survive a reboot)",
            f"mount -t tmpfs -o size=50%,mode=1777 tmpfs {directory}",
            figures,
        )
    return Check(name, PASS, f"{directory} is a tmpfs", figures=figures)


def shm_size(directory: str) -> Check:
    """Its size against RAM, and its free space."""
    stats = os.statvfs(directory)
    total, free = stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize
    memory = system.meminfo()
    ram, available = memory.get("MemTotal", 0), memory.get("MemAvailable", 0)
    swap = memory.get("SwapTotal", 0)
    figures = {"size": total, "free": free, "ram": ram, "ram_available": available}
    said = f"{format_size(free)} free of {format_size(total)} (RAM {format_size(ram)}, "
    said += f"{format_size(available)} available)"
    if ram and total > ram + swap:
        return Check(
            "shm-size",
            WARN,
            f"{said}: larger than RAM and swap, so filling it "
            "wakes the out-of-memory killer instead of failing cleanly",
            f"mount -o remount,size=50% {directory}",
            figures,
        )
    if total and free < min(total // 10, 256 << 20):
        return Check(
            "shm-size",
            WARN,
            f"{said}: nearly full",
            "see what holds it with `clara dump`; reclaim leaks with `clara leak-check --fix`",
            figures,
        )
    return Check("shm-size", PASS, said, figures=figures)


def in_container() -> str:
    """'docker', 'podman', 'kubernetes', ... if this looks like a container, else ''."""
    if os.path.exists("/.dockerenv"):
        return "docker"
    if os.path.exists("/run/.containerenv"):
        return "podman"
    cgroup = system.read_text("/proc/1/cgroup") or ""
    for marker in ("kubepods", "docker", "containerd", "lxc"):
        if marker in cgroup:
            return marker
    return os.environ.get("container", "")  # noqa: SIM112 (systemd spells it lowercase)


def container_shm(directory: str) -> Check:
    """Docker's default /dev/shm of 64 MiB, too small for most volumes."""
    stats = os.statvfs(directory)
    total = stats.f_blocks * stats.f_frsize
    engine = in_container()
    figures = {"container": engine or None, "size": total}
    if total > DOCKER_DEFAULT:
        where = f"in a container ({engine})" if engine else "not in a container"
        return Check("container-shm", PASS, f"{format_size(total)}, {where}", figures=figures)
    if engine:
        return Check(
            "container-shm",
            WARN,
            f"{directory} is {format_size(total)}: "
            f"{engine}'s default /dev/shm, too small for most pipelines",
            "start the container with a larger one: docker run --shm-size=8g (compose: "
            "shm_size: 8g; Kubernetes: an emptyDir with medium: Memory on /dev/shm)",
            figures,
        )
    return Check(
        "container-shm",
        WARN,
        f"{directory} is only {format_size(total)}",
        f"mount -o remount,size=50% {directory}",
        figures,
    )


def logind_remove_ipc() -> tuple[str, str]:
    """(value, where it was set) of logind's RemoveIPC, the last setting winning."""
    files = {}
    for directory in LOGIND_DIRS:  # a drop-in of one name in a later directory overrides
        for path in glob.glob(os.path.join(directory, "*.conf")):
            files[os.path.basename(path)] = path
    value, source = "yes", "systemd's default"
    for path in ["/etc/systemd/logind.conf"] + [files[n] for n in sorted(files)]:
        section = ""
        for raw in (system.read_text(path) or "").splitlines():
            line = raw.strip()
            if line.startswith("["):
                section = line
            elif section == "[Login]" and line.split("=", 1)[0].strip() == "RemoveIPC":
                value, source = line.split("=", 1)[1].strip().lower(), path
    return value, source


def remove_ipc() -> Check:
    """systemd-logind's RemoveIPC=yes deletes a user's POSIX shared memory at logout."""
    name = "remove-ipc"
    if not any(os.path.exists(p) for p in LOGIND_BINARIES):
        return Check(
            name, PASS, "systemd-logind is not installed: nothing removes segments at logout"
        )
    value, source = logind_remove_ipc()
    figures = {"RemoveIPC": value, "source": source}
    if value in ("no", "false", "0", "off"):
        return Check(name, PASS, f"RemoveIPC={value} ({source})", figures=figures)
    system_user = os.geteuid() <= _sys_uid_max()
    said = f"RemoveIPC={value} ({source}): when a regular user's last session ends, "
    said += "logind deletes every segment they own, mid-pipeline and silently"
    fix = (
        "printf '[Login]\\nRemoveIPC=no\\n' > /etc/systemd/logind.conf.d/90-clara.conf "
        "&& systemctl restart systemd-logind"
    )
    if system_user:
        return Check(
            name, PASS, f"{said}; uid {os.geteuid()} is a system user, exempt", figures=figures
        )
    return Check(name, WARN, said, fix, figures)


def _sys_uid_max() -> int:
    for line in (system.read_text("/etc/login.defs") or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "SYS_UID_MAX" and parts[1].isdigit():
            return int(parts[1])
    return 999


def open_files() -> Check:
    """Each reference holds a file descriptor: `ulimit -n` caps how many a process holds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    figures = {"soft": soft, "hard": hard}
    if soft < MIN_OPEN_FILES:
        raise_to = "unlimited" if hard == resource.RLIM_INFINITY else hard
        return Check(
            "open-files",
            WARN,
            f"ulimit -n is {soft}: a process can hold fewer than {soft} references at once",
            f"ulimit -n {raise_to} (or raise nofile in /etc/security/limits.conf)",
            figures,
        )
    return Check("open-files", PASS, f"ulimit -n is {soft} (hard {hard})", figures=figures)


def ofd_locks(directory: str) -> Check:
    """Open-file-description locks, which every map and reference relies on."""
    where = directory if os.path.isdir(directory) else "/tmp"
    problem = system.ofd_locks_work(where)
    if problem:
        return Check(
            "ofd-locks",
            FAIL,
            f"OFD locks do not work in {where}: {problem}",
            "use Linux 3.15 or later and a local tmpfs (not a network file system)",
        )
    return Check("ofd-locks", PASS, f"OFD locks work in {where}")


def proc_visibility() -> Check:
    """/proc mounted with hidepid hides other users' processes from dump and leak-check."""
    mount = system.mount_of("/proc")
    hidepid = (mount.options.get("hidepid", "") if mount else "") or "0"
    figures = {"hidepid": hidepid}
    if hidepid in ("0", "off") or os.geteuid() == 0:
        return Check(
            "proc",
            PASS,
            f"/proc shows every process (hidepid={hidepid}"
            f"{', and we are root' if hidepid not in ('0', 'off') else ''})",
            figures=figures,
        )
    return Check(
        "proc",
        WARN,
        f"/proc is mounted with hidepid={hidepid}: `clara dump` and "
        "`clara leak-check` cannot see other users' processes that map segments "
        "(reclaiming stays safe: it relies on locks, not on /proc)",
        "mount -o remount,hidepid=0 /proc, or add this user to the group named by "
        "/proc's gid= option",
        figures,
    )


PROTECTED = {  # sysctl -> the least value that protects a sticky shared directory
    "fs.protected_symlinks": 1,
    "fs.protected_hardlinks": 1,
    "fs.protected_fifos": 1,
    "fs.protected_regular": 1,
}


def protected_sysctls() -> Check:
    """The kernel's protections against names planted in sticky world-writable directories."""
    values = {name: system.sysctl(name) for name in PROTECTED}
    weak = [n for n, v in values.items() if v is None or not v.isdigit() or int(v) < PROTECTED[n]]
    said = ", ".join(f"{n.split('.')[1]}={v if v is not None else '?'}" for n, v in values.items())
    if not weak:
        return Check("protected", PASS, said, figures=values)
    settings = " ".join(
        f"{n}={max(PROTECTED[n], 1) if 'symlinks' in n or 'hardlinks' in n else 2}" for n in weak
    )
    return Check(
        "protected",
        WARN,
        f"{said}: other programs that use the shared directory "
        "by name (a shell's `> /dev/shm/x`) can be tricked by planted files "
        "(clara itself opens by descriptor and refuses links)",
        f"sysctl -w {settings} (keep it in /etc/sysctl.d/90-clara.conf)",
        values,
    )


def leaks() -> Check:
    """Leaked segments in this namespace."""
    report = check_leaks()
    ns = namespace()
    figures = {"leaks": len(report.leaks), "leaked_bytes": report.leaked_bytes, "namespace": ns}
    if report.clean:
        return Check("leaks", PASS, f"no leaks in namespace {ns}", figures=figures)
    return Check(
        "leaks",
        WARN,
        f"{len(report.leaks)} leaked segment(s), "
        f"{format_size(report.leaked_bytes)}, in namespace {ns}",
        "see them with `clara leak-check`; remove them with `clara leak-check --fix`",
        figures,
    )


def c_extension() -> Check:
    """Whether the C extension issues the hot paths' system calls (shm/native.py): a build
    that is missing or skipped (stale, incomplete, unloadable) falls back silently to the
    pure-Python twins, which cost P1 about 20% more; off by CLARA_PURE_PYTHON=1 is chosen."""
    name, state, calls = "c-extension", native.state, native.calls
    file = calls.__file__ if calls is not None else None
    figures = {"state": state, "problem": native.problem or None, "file": file}
    if state == native.LOADED:
        return Check(
            name,
            PASS,
            f"loaded: the hot paths' calls go out from C ({file})",
            figures=figures,
        )
    if state == native.OFF:
        return Check(
            name,
            PASS,
            "off by CLARA_PURE_PYTHON=1: the same calls go out from Python, slower",
            figures=figures,
        )
    slower = "clara issues the hot paths' calls from Python (P1 about 20% slower)"
    if state == native.NOT_BUILT:
        return Check(
            name,
            WARN,
            f"not built: {slower}",
            "install a C compiler and Python's headers (gcc, python3-dev), then reinstall "
            "clara-fastio (in a checkout: pip install -e .)",
            figures,
        )
    return Check(
        name,
        WARN,
        f"built but skipped, {state}: {native.problem}; {slower}",
        "rebuild it: reinstall clara-fastio (in a checkout: pip install -e .)",
        figures,
    )
