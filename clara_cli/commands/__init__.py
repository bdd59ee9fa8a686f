"""One module per verb group of the `clara` command line."""
