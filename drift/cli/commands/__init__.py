"""The subcommands of ``python -m drift``, one module each, registered in :data:`COMMANDS`.

A command module has ``add_options(parser)`` (its options, from :mod:`drift.cli.options`) and
``run(args)`` (the work; an exit status or ``None``). The analyses (``trace``, ``sadr``,
``mechanism``, ``sequential``, ``steps``) also have ``parse(argv)`` and ``main(argv)`` for their
scripts in ``analyses/``. A command module imports nothing heavy at the top, so that a bad option is
refused before torch loads.
"""

COMMANDS = {  # name: (module, help), in the order --help lists them
    "eval": ("drift.cli.commands.eval", "evaluate an editor (or none) on edit cases; writes a results JSON"),
    "merge": (
        "drift.cli.commands.merge",
        "join the parts of one run (eval --shard, audit) into one results JSON",
    ),
    "compare": (
        "drift.cli.commands.compare",
        "a table of finished runs, with paired differences against the first",
    ),
    "sweep": (
        "drift.cli.commands.sweep",
        "many eval runs from a TOML file, in chunks, on Ray workers or here",
    ),
    "audit": ("drift.cli.commands.audit", "predict each edit's specificity failure from its attention drift"),
    "trace": (
        "drift.cli.commands.trace",
        "where and why an edit fails on unrelated prompts (section 3's figures)",
    ),
    "sadr": (
        "drift.cli.commands.sadr",
        "SADR's Table 3, Fig. 6 and Fig. 7 on one model (a sweep of eval runs)",
    ),
    "mechanism": ("drift.cli.commands.mechanism", "what SADR does inside ROME: loss terms, restrained heads"),
    "sequential": ("drift.cli.commands.sequential", "sequential editing and knowledge attenuation (AdaPLE)"),
    "steps": ("drift.cli.commands.steps", "ROME at 20 steps against 80 without early stopping"),
    "report": (
        "drift.cli.commands.report",
        "one HTML page for one edit: metrics, substitution, drifting heads",
    ),
    "demo": ("drift.cli.commands.demo", "load the default model and show a few facts' probabilities"),
    "doctor": ("drift.cli.commands.doctor", "re-hash every cached model and statistic in full"),
    "prepare": (
        "drift.cli.commands.prepare",
        "convert the model, cache the key statistics and prefixes of its editors",
    ),
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
