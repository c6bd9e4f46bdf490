"""The `dq-edge` command line (typer). Only this package prints and picks exit codes."""
