"""`python -m bot`: the command line. Each subcommand lives in the module that owns its behaviour."""
from __future__ import annotations

import argparse
import importlib
import sys

# name → (module exposing `configure(parser)` and `main(args) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "migrate": ("bot.commands.migrate", "apply the database migrations (SQLite under ./var/ by default)"),
    "serve": ("bot.commands.serve", "run the Slack app over HTTP (or Socket Mode) with the job scheduler"),
    "worker": ("bot.commands.worker", "run the job loop only, without the web server"),
    "voiceprint": ("bot.commands.identify", "create a voiceprint from a clip of one voice (at most 30 s)"),
    "identify": ("bot.commands.identify", "diarize a recording and identify speakers against voiceprints"),
    "transcribe": ("bot.commands.transcribe", "transcribe a recording with a speaker for every word (offline, CPU)"),
    "engine-server": ("bot.commands.engine_server", "serve the local engine over the pyannoteAI HTTP protocol"),
    "rotate-keys": ("bot.commands.rotate_keys", "re-encrypt voiceprints and tokens with the first key of DATA_ENCRYPTION_KEYS"),
    "people": ("bot.commands.people", "a person's data-protection request: export or delete what is stored about them"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Only the chosen subcommand's module is imported, so `--help` stays fast and light."""
    parser = argparse.ArgumentParser(prog="python -m bot", description="Voice ID for Slack: who spoke when.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != selected:
            continue
        module = importlib.import_module(module_name)
        configure = getattr(module, f"configure_{name.replace('-', '_')}", None) or module.configure
        configure(p)
        p.set_defaults(_module=module, _name=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    import logging

    from bot.logs import configure_logging

    configure_logging("WARNING")  # until a command sets its own level: nothing unredacted, even from a library
    module = args._module
    run = getattr(module, f"main_{args._name.replace('-', '_')}", None) or module.main
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from storage.database import DatabaseURLError

        if isinstance(exc, DatabaseURLError):  # a setting's problem: one line, as for the others
            print(f"Voice ID cannot start: {exc}", file=sys.stderr)
            return 2
        # through the log's redaction (secrets, URL passwords) and line escaping, not straight to stderr
        logging.getLogger("bot").exception("python -m bot %s stopped on an unexpected error", args._name)
        return 1


if __name__ == "__main__":
    sys.exit(main())
