"""What the listings of clara_core.inspect read, and what they leave alone."""

from __future__ import annotations

from clara_core import Context, inspect
from clara_core.shm import segment


def test_a_context_listing_opens_none_of_a_context_whose_name_extends_its_own(monkeypatch):
    """`job` is a prefix of `job1`'s file names: `clara dump job` must not open those."""
    contexts = [Context.create("job"), Context.create("job1")]
    try:
        for context, name in zip(contexts, ("mine", "theirs"), strict=True):
            alloc = context.create(4096)
            alloc.publish(name)
            alloc.release()
        opened: list[str] = []
        real_open = segment.open_segment

        def spying(file_name: str, *args, **kwargs):
            opened.append(file_name)
            return real_open(file_name, *args, **kwargs)

        monkeypatch.setattr(segment, "open_segment", spying)
        summary, members = inspect.context_members("job")
        assert summary.name == "job"
        assert [m.name for m in members] == ["mine"]
        assert opened and not [name for name in opened if ".job1" in name]
    finally:
        for context in contexts:
            context.destroy()
