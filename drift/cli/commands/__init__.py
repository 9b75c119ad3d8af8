"""The analyses as subcommands of ``python -m drift`` (and as ``analyses/NAME.py``, thin entry
points to the same code).

Each module has ``options(parser)`` (its options, from :mod:`drift.cli.options`), ``parse(argv)`` (its
own parser, for the script), ``run(args)`` and ``main(argv)``. A module imports nothing heavy at
the top, so that ``python -m drift COMMAND`` with a bad option is refused before torch loads.
"""

COMMANDS = {  # subcommand: (module, help)
    "trace": (
        "drift.cli.commands.trace",
        "where and why an edit fails on unrelated prompts (§3 figures, tables)",
    ),
    "sadr": (
        "drift.cli.commands.sadr",
        "SADR's Table 3, Fig. 6 and Fig. 7 on one model (a sweep of eval runs)",
    ),
    "mechanism": ("drift.cli.commands.mechanism", "what SADR does inside ROME: loss terms, restrained heads"),
    "sequential": ("drift.cli.commands.sequential", "sequential editing and knowledge attenuation (AdaPLE)"),
    "steps": ("drift.cli.commands.steps", "ROME at 20 steps against 80 without early stopping"),
}


def script(main) -> None:
    """Run an ``analyses/NAME.py`` script's ``main()`` as the command line runs a subcommand: a
    user's mistake printed as one line ``error: ...`` with exit status 2, Ctrl-C as one line
    with status 130 (finished work stays saved; the same command resumes)."""
    import sys

    from drift.cli.options import OptionError, user_error

    try:
        main()
    except OptionError:  # the parser has printed it
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; finished work is saved; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        if not user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
