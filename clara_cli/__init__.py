"""clara_cli: the `clara` command line, a thin Click layer over clara_core."""
