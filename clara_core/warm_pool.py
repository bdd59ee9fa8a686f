"""Warm pools: a recycling pool that outlives the contexts that use it.

A context's own pool (`pool`) dies with the context, and `clara run` gives every job a
fresh context: so every job paid for fresh pages (the kernel faults and zeroes each 4 KiB
of a new segment). A *warm pool* is simply another context, longer-lived (typically
without owner), whose pool short-lived contexts share:

    Context.create("job-1", owner_pid=os.getpid(), warm_pool="warm")   # Python
    clara run PIPELINE --warm-pool warm                                  # the CLI

A context with a warm pool claims its new private allocations from the warm pool's slots
and retires what it frees into them, never into its own pool. The warm pool's cap
(`pool_bytes` when it was created) bounds what it keeps; what does not fit is freed.

How a segment crosses contexts, safely (the threat model of design.md):

- **Who may share.** A warm pool must be this user's own context, writable, with a pool
  (pool cap > 0), and have exactly the mode of the context using it, a mode that lets
  no other user write (600, 640, 644). So a pooled segment keeps the permission bits and
  owner it had as a member of the job's context, is admitted by both contexts' rules
  (`shm.trust`), and another uid never gets our pages: a claim opens a pool name only
  by the one safe open, with the warm pool's admission rule (our uid, no wider mode).
  Nor does another group: when the mode lets the group read (640), a context claims
  only segments of its own group (one made by a process of ours running under another
  of our groups, `sg`, keeps that group; `pool._group_of`).
- **Claim** (`pool.claim`): under the warm pool's pool lock, a slot of its ledger names
  the candidate; it is opened, its exclusive reference lock taken, and then, under that
  lock, proven to be still that pool entry (the pool name denotes this very inode,
  nothing else names it, its size is the slot's, its lifecycle pooled or private). Only
  then is its whole header rewritten, as a new member of the claiming context (that
  context's name, and its incarnation in origin.context_created_ns): readers, the C
  library included, see a fresh private allocation of the job's context, state empty.
  Until it is published it keeps its warm-pool name and slot; published, that name and
  slot go (`pool.leave`, in the warm pool's ledger).
- **Retire** (`pool.retire`): under the exclusive reference lock (nobody else holds the
  segment) and the warm pool's pool lock, the whole header is rewritten as a pooled
  member of the warm pool (its name and incarnation; lifecycle pooled, state empty),
  then the segment is renamed (`RENAME_NOREPLACE`) or linked to a new random pool name
  of the warm pool. A reader that opened the old name meanwhile finds it pooled: freed.
  If the warm pool was destroyed meanwhile, the segment is freed normally.

**What a claimed allocation contains**: the pool's rule. Its state is `empty` (never
written), so every reader is refused ("never written", exit 6) until a writer has
finished; its bytes are undefined, as numpy.empty's, and may be an earlier job's of
this same user and mode (only `--allow-incomplete` reads show them). Never another
user's: pools never cross owners or modes.

**Tools.** The warm pool is a context like any other: `dump`, `top` and `leak-check`
show its pooled bytes as `pooled` (reclaimable, never a leak; a segment claimed by a
job whose process died is pooled again, and the next claim takes it); `destroy`
empties it (a job using it then frees normally; a segment a job claimed keeps its pool
name, the only one the job can publish it from, until the job publishes or frees it:
`removal`); `leak-check --fix` may empty it. A full
file system empties every idle pool of the namespace, warm pools included, and retries.

**Concurrency.** Jobs sharing a warm pool at once serialise only on its pool lock (a
bounded 0.5 s wait, else they do without the pool); a segment is handed to one claimer
only (the exclusive reference lock and the proof above). A job killed with -9 leaves
what it had claimed but not published in the pool; what it had published stays in its
own (owner-dead) context, which `leak-check --fix` reclaims.
"""

from __future__ import annotations

import os

from .errors import InvalidArgument, PermissionDenied
from .names import same_name
from .registry import Registry
from .shm.trust import GROUP_WRITES, OTHERS_WRITE, user_name


def check(warm: Registry, context_name: str, mode: int) -> None:
    """Raise unless `warm` may be the warm pool of context `context_name` of `mode`."""
    what = f"warm pool '{warm.name}'"
    if same_name(warm.name, context_name):
        raise InvalidArgument(f"context '{context_name}' cannot be its own warm pool")
    if warm.uid != os.geteuid():
        raise PermissionDenied(
            f"{what} belongs to {user_name(warm.uid)}: only a context of your own may "
            "keep your memory"
        )
    if not warm.writable:
        raise PermissionDenied(f"{what} is not writable by this user (mode {warm.mode:o})")
    if warm.mode & (GROUP_WRITES | OTHERS_WRITE):
        raise InvalidArgument(
            f"{what} has mode {warm.mode:o}: a warm pool must let no other user write"
        )
    if warm.mode != mode:
        raise InvalidArgument(
            f"{what} has mode {warm.mode:o}, context '{context_name}' {mode:o}: pooled "
            "segments keep their mode, so both must have the same"
        )
    if not warm.pool_cap:
        raise InvalidArgument(f"{what} has no pool (its pool cap is 0)")
