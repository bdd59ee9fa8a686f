"""The only code that talks to the kernel about shared memory.

    segment    segment files: the one safe open by name, the header read, maps
    directory  the shared-memory directory's descriptor; link, unlink, rename by name
    listing    the directory listed (tooling and repairs only)
    memory     mmap / mremap / munmap of a segment, and views cut off at unmap
    memory_calls   memory's mmap, munmap and holders through ctypes (no C extension)
    header     the self-describing header page: its format and its strict validation
    locks      OFD byte-range locks (released by the kernel when their holder dies)
    processes  /proc readers: process identity (pid + start time), who maps and locks what

Nothing here knows contexts or allocations as objects; the object model above uses it.
"""
