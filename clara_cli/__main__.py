"""`python -m clara_cli`: the same as the `clara` command."""

from clara_cli.fastpath import main

main()
