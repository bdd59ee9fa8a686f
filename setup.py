"""The C extension clara_core.shm._calls (everything else is in pyproject.toml).

It is optional: without a C compiler or Python's headers the install still succeeds and
clara runs the same system calls from Python (clara_core/shm/native.py), only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "clara_core.shm._calls",
            sources=[
                "clara_core/shm/c/module.c",
                "clara_core/shm/c/access.c",
                "clara_core/shm/c/holder.c",
                "clara_core/shm/c/making.c",
                "clara_core/shm/c/freeing.c",
                "clara_core/shm/c/creating.c",
                "clara_core/shm/c/staging.c",
                "clara_core/shm/c/fields.c",
                "clara_core/shm/c/naming.c",
                "clara_core/shm/c/mapped.c",
                "clara_core/shm/c/staged_map.c",
                "clara_core/shm/c/staged_unmap.c",
                "clara_core/shm/c/usual.c",
                "clara_core/shm/c/usual_methods.c",
            ],
            depends=[
                "clara_core/shm/c/calls.h",
                "clara_core/shm/c/fields.h",
                "clara_core/shm/c/mapped.h",
            ],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11", "-D_GNU_SOURCE"],
            optional=True,
        )
    ]
)
