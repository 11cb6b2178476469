"""python -m weightspace COMMAND: the library's commands outside the workflow."""

from __future__ import annotations

import sys

from weightspace import WeightspaceError

COMMANDS = {
    "claims": "the workflow's clustering claims and t-SNE on any distance or similarity matrix",
    "export": "a study's fine-tunes as Hugging Face folders (to bring into another study)",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(
            "usage: python -m weightspace COMMAND [options]\n\ncommands:\n"
            + "\n".join(f"  {name:8s} {what}" for name, what in COMMANDS.items()),
            file=sys.stderr,
        )
        return 2
    try:
        if argv[0] == "export":
            from weightspace.model import export

            return export.main(argv[1:])
        from weightspace.geometry import matrix_claims

        return matrix_claims.main(argv[1:])
    except WeightspaceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
