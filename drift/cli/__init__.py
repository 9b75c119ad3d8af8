"""The command line: options, the run layer (logs, results files), and one module per subcommand.

The top layer; the only one with imports inside functions (so a bad option is refused before torch
loads).
"""
