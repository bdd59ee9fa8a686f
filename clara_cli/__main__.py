"""`python -m clara_cli`: the same as the `clara` command."""

import gc

gc.disable()  # before any import: clara_cli.fastpath.main says why
from clara_cli.fastpath import main  # noqa: E402

main()
