"""Leak detection and safe reclaiming, from the segments and the kernel alone.

Every named segment of the namespace gets one status:

    live        published in an existing context, held by a live process, or mapped
    idle        a context without owner: kept until destroyed, never called a leak
    pooled      a freed segment kept for recycling: reclaimable, not a leak
    orphaned    unreachable forever: its context is gone, the holder of its handle died
                before publishing it, or an earlier context of that name left it
                (its destroy did not finish); and nobody maps it               (leak)
    owner-dead  in (or is) a context whose owner process has exited           (leak)
    stale       in (or is) a context without owner idle for longer than the age
                given to check/reclaim (`older_than`)                          (leak)
    corrupt     in our namespace but with a damaged header                      (leak)
    foreign     another user's segment: reported, never touched

An allocation whose writer died mid-write is also flagged *incomplete*; that alone is not
a leak. Registry entries cannot dangle: the registry is the directory, so an entry and
its segment are the same file.

`reclaim()` removes only what is provably unused and provably ours: it takes the
exclusive reference and lifecycle locks (no process holds a reference, nobody frees or
destroys it meanwhile), re-reads /proc/*/maps (no process maps it), checks the owner uid,
checks that every name still denotes the file it checked (see `removal`), and never
removes a context while any of its allocations is in use.

It acts on a header's word (owner pid, holder pid, freed, age, corruption) only when
nobody else can have written that header: a segment of ours whose mode lets other users
write (a shared context's, 660 or 666) is reported but never removed on such grounds.
Names (a member whose context is gone, a pool entry) are facts only its owner can
change, and count whatever the mode.
"""

from __future__ import annotations

import os

from .errors import ClaraError
from .inspect import SegmentInfo, claimed_elsewhere, left_by_earlier, survey
from .records import Record
from .shm import header as hdr
from .shm import processes
from .shm.processes import Mapper

LIVE, IDLE, POOLED = "live", "idle", "pooled"
ORPHANED, OWNER_DEAD, CORRUPT, FOREIGN = "orphaned", "owner-dead", "corrupt", "foreign"
STALE = "stale"
LEAK_STATUSES = (ORPHANED, OWNER_DEAD, CORRUPT, STALE)


class Finding(Record):
    """A segment, its status and the reason for it."""

    segment: SegmentInfo
    status: str
    reason: str
    owner_pid: int | None = None  # the owner process of its context (or of this context)
    holder_pid: int | None = None  # the process a handle belongs to until published
    trusted: bool = True  # False: it rests on a header other users can write

    @property
    def mapped_by(self) -> list[Mapper]:
        """The live processes that map it right now."""
        return self.segment.mapped_by

    @property
    def is_leak(self) -> bool:
        """Whether this segment is leaked memory."""
        return self.status in LEAK_STATUSES

    @property
    def incomplete(self) -> bool:
        """Whether its writer died mid-write."""
        return self.segment.state == "incomplete"


class LeakReport(Record):
    """The outcome of a leak scan."""

    findings: list[Finding]

    @property
    def leaks(self) -> list[Finding]:
        """The findings that are leaks."""
        return [f for f in self.findings if f.is_leak]

    @property
    def leaked_bytes(self) -> int:
        """Bytes held by leaked segments."""
        return sum(f.segment.size for f in self.leaks)

    @property
    def clean(self) -> bool:
        """True when nothing leaks."""
        return not self.leaks

    @property
    def in_use(self) -> list[tuple[Finding, str]]:
        """The leaks reclaim() would keep because live processes use them, each with who
        uses it and what to do."""
        return [(f, why) for f, why in _plan(self)[1] if f.is_leak]


class ReclaimReport(Record):
    """What reclaim() removed, what it had to keep and why, and a fresh scan after it."""

    removed: list[Finding]
    kept: list[tuple[Finding, str]]
    after: LeakReport

    @property
    def freed_bytes(self) -> int:
        """Bytes of the removed segments."""
        return sum(f.segment.size for f in self.removed)


def check(older_than: float | None = None) -> LeakReport:
    """Scan the namespace and classify every segment.

    With `older_than` (seconds), contexts without owner idle for longer than that, and
    everything in them, are `stale`: leaks that reclaim() may remove.
    """
    infos = survey()
    contexts = {
        i.context_token: _context_finding(i, older_than) for i in infos if i.kind == "context"
    }
    findings = []
    for info in infos:
        if info.kind == "context":
            findings.append(contexts[info.context_token])
        else:
            findings.append(_member_finding(info, contexts.get(info.context_token)))
    return LeakReport(findings)


def _context_finding(info: SegmentInfo, older_than: float | None) -> Finding:
    special = _unreadable(info)
    if special:
        return special
    assert info.header is not None
    origin = info.header.origin
    if not origin.owner_pid:
        if older_than is not None and info.age >= older_than:
            return Finding(
                info, STALE, f"no owner, idle over {older_than:g} s", trusted=info.trusted
            )
        return Finding(info, IDLE, "no owner: kept until destroyed")
    owner = origin.owner_pid
    if processes.is_alive(owner, origin.owner_start):
        return Finding(info, LIVE, f"owner {owner} runs", owner_pid=owner)
    return Finding(info, OWNER_DEAD, f"owner {owner} exited", owner_pid=owner, trusted=info.trusted)


def _member_finding(info: SegmentInfo, context: Finding | None) -> Finding:
    special = _unreadable(info)
    if special:
        return special
    assert info.header is not None
    owner = context.owner_pid if context is not None else None
    users = _pids_of(info)
    if info.kind != "pooled" and info.header.lifecycle == hdr.FREED and not users:
        # free() marks it, then removes its name: whoever freed it died in between.
        return Finding(info, ORPHANED, "its freer died mid-free", owner, trusted=info.trusted)
    if info.kind == "handle":
        origin = info.header.origin
        holder = origin.owner_pid or None
        if processes.is_alive(origin.owner_pid, origin.owner_start):
            return Finding(info, LIVE, f"holder {holder} runs", owner, holder)
        if users:
            return Finding(info, LIVE, f"unpublished, used by {users}", owner, holder)
        why = f"holder {holder} exited"
        return Finding(info, ORPHANED, why, owner, holder, trusted=info.trusted)
    if context is not None and context.status == FOREIGN:
        # Its owner's to judge: we cannot tell whether another user's context is in use.
        return Finding(info, LIVE, f"in context '{info.context}' of uid {context.segment.uid}")
    if context is None or context.status == CORRUPT:
        if users:
            return Finding(info, LIVE, f"context gone, used by {users}")
        if context is None:  # a name that is gone: a fact, whoever could write headers
            return Finding(info, ORPHANED, "its context is gone")
        return Finding(info, ORPHANED, "its context is corrupt", trusted=context.trusted)
    if claimed_elsewhere(info, context.segment):
        claimer = f"claimed by context '{info.header.context}'"
        if users:  # a job using a warm pool (`warm_pool`), not yet published
            return Finding(info, LIVE, f"{claimer}, used by {users}", owner)
        return Finding(info, POOLED, f"{claimer}, which let go of it: kept for recycling", owner)
    if left_by_earlier(info, context.segment):  # its destroy did not finish
        if users:
            return Finding(info, LIVE, f"left by an earlier context; used by {users}")
        why = "left by an earlier context"
        return Finding(info, ORPHANED, why, trusted=info.trusted)
    if context.status in (OWNER_DEAD, STALE):
        stale = context.status == STALE
        reason = "its context is stale" if stale else f"owner {owner} exited"
        reason += f"; used by {users}" if users else ""
        return Finding(info, context.status, reason, owner, trusted=context.trusted)
    if info.kind == "pooled":
        return Finding(info, POOLED, "kept for recycling", owner)
    return Finding(info, LIVE, "published", owner)


def _unreadable(info: SegmentInfo) -> Finding | None:
    if info.uid != os.geteuid():
        return Finding(info, FOREIGN, f"belongs to uid {info.uid}")
    if info.header is None:
        # Ours, but a header others may write can be damaged on purpose: not proof.
        why = info.problem or "unreadable header"
        return Finding(info, CORRUPT, why, trusted=info.trusted)
    return None


def _pids_of(info: SegmentInfo) -> str:
    """Short: who uses it, by pid (the reasons stay one line; commands are in mapped_by)."""
    if info.mapped_by:
        return ", ".join(f"pid {m.pid}" for m in info.mapped_by)
    return "a live process" if info.in_use else ""


def _users(infos: list[SegmentInfo]) -> list[Mapper]:
    """The processes that use any of `infos`: those mapping them, else (for a reference
    held without a mapping) those holding them open."""
    found = {m.pid: m for info in infos for m in info.mapped_by}
    unmapped = {info.file_id for info in infos if info.in_use and not info.mapped_by}
    if unmapped:
        for holders in processes.openers(unmapped).values():
            for m in holders:
                found.setdefault(m.pid, m)
    return [found[pid] for pid in sorted(found)]


def _in_use_why(infos: list[SegmentInfo]) -> str:
    """Who uses these segments, and what to do about it."""
    users = _users(infos)
    who = ", ".join(str(m) for m in users) or "a live process"
    them = "them" if len(users) > 1 else "it"
    return f"in use by {who}; stop {them} or wait, then rerun --fix"


def reclaim(older_than: float | None = None) -> ReclaimReport:
    """Remove leaked and pooled segments that nobody uses.

    Idle contexts (and all their allocations) go too if older than `older_than` seconds.
    Then the ledgers of our contexts are counted again (repairing what a process killed
    half-way left, see `shm.ledger`).
    """
    from . import removal  # (only --fix removes: `clara leak-check` alone never loads it)

    report = check(older_than)
    groups, kept = _plan(report)
    removed = []
    for group in groups:
        files = [
            (f.segment.file_name, f.segment.file_id, f.segment.kind == "context") for f in group
        ]
        why = removal.remove_unused(files)
        if why:
            kept.extend((f, f"{why}; rerun --fix") for f in group)
        else:
            removed.extend(group)
    _repair_ledgers(report)
    return ReclaimReport(removed, kept, check(older_than))


def _plan(report: LeakReport) -> tuple[list[list[Finding]], list[tuple[Finding, str]]]:
    """What reclaim() tries to remove, in groups removed together (a context with its
    allocations), and what it keeps because it is in use, with why."""
    by_context: dict[str, list[Finding]] = {}
    for finding in report.findings:
        by_context.setdefault(finding.segment.context_token, []).append(finding)
    groups: list[list[Finding]] = []
    kept: list[tuple[Finding, str]] = []
    grouped: set[str] = set()
    for finding in report.findings:
        info = finding.segment
        if info.kind != "context" or finding.status not in (OWNER_DEAD, CORRUPT, STALE):
            continue
        # Another user's segments put in our context stay: never ours to remove, and
        # no reason to keep ours.
        members = [m for m in by_context[info.context_token] if m.status != FOREIGN]
        junk = [m for m in members if m.segment.unusable and m is not finding]
        kept.extend((m, _unusable(m.segment)) for m in junk)
        members = [m for m in members if m not in junk]  # reported, never in the way
        grouped.add(info.context_token)
        busy = [m.segment for m in members if m.segment.in_use]
        if not finding.trusted:
            why = _untrusted(info)
            kept.extend((m, why) for m in members if m.is_leak or m is finding)
        elif busy:
            why = _in_use_why(busy)  # one member in use keeps the whole context
            kept.extend((m, why) for m in members if m.is_leak or m is finding)
        else:
            groups.append([finding] + [m for m in members if m is not finding])
    for finding in report.findings:
        info = finding.segment
        if not (finding.is_leak or finding.status == POOLED):
            continue
        if info.kind == "context" or info.context_token in grouped:
            continue
        if info.unusable:
            kept.append((finding, _unusable(info)))
        elif not finding.trusted:
            kept.append((finding, _untrusted(info)))
        elif info.in_use:
            kept.append((finding, _in_use_why([info])))
        else:
            groups.append([finding])
    return groups, kept


def _unusable(info: SegmentInfo) -> str:
    return f"{info.problem or 'it cannot be opened'}: remove it by hand"


def _untrusted(info: SegmentInfo) -> str:
    return (
        f"others may write its header (mode {info.mode:o}): no proof; free or destroy it yourself"
    )


def _repair_ledgers(report: LeakReport) -> None:
    """Count the ledger of each context of ours again: pool slots whose segment is gone
    are dropped, and the published bytes are counted where there is a capacity."""
    from . import pool
    from .registry import Registry

    for finding in report.findings:
        info = finding.segment
        if info.kind != "context" or info.header is None or info.uid != os.geteuid():
            continue
        try:
            with Registry.of_file(info.file_name, info.file_id) as registry:
                if registry is None:
                    continue
                with registry.pool_locked() as locked:
                    if locked:
                        pool.prune(registry)
                if registry.capacity is not None:
                    registry.recount_published()
        except (ClaraError, OSError):
            continue  # busy: the next run repairs it
