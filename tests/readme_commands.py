"""The commands and code a Markdown document shows, for tests/test_readme.py.

Commands come from ```bash blocks (one per line, `&&` chains split) and from
inline code spans that start with `keras-defusion` or `python -m`. Numbers
quoted from benchmark results are read by `benchmarks.quoted_numbers`.
"""

import re
import shlex

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
PROGRAMS = ("keras-defusion ", "python -m ")
NESTED = ("export",)  # subcommands with their own subcommands (FORMAT)


def code_blocks(text, language):
    """The bodies of the fenced blocks of one language."""
    return [body for lang, body in FENCE.findall(text) if lang == language]


def _clean(line):
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:]
    # A comment starts at " #" outside quotes; the README's never quote one.
    return re.split(r"\s+#\s", line)[0].strip()


def shell_commands(text):
    """Every command line of the ```bash blocks, `&&` chains split."""
    commands = []
    for body in code_blocks(text, "bash"):
        for line in body.replace("\\\n", " ").splitlines():
            for part in _clean(line).split("&&"):
                if part.strip():
                    commands.append(part.strip())
    return commands


def inline_commands(text):
    """Inline code spans that run one of our programs."""
    prose = FENCE.sub("", text)
    spans = (" ".join(span.split()) for span in INLINE.findall(prose))
    return [span for span in spans if span.startswith(PROGRAMS)]


def program_of(command):
    """("keras-defusion", SUBCOMMAND) or ("python -m", MODULE), else None."""
    words = command.replace("[", " ").replace("]", " ").split()
    if len(words) >= 2 and words[0] == "keras-defusion":
        if words[1] in NESTED and len(words) >= 3:
            return ("keras-defusion", f"{words[1]} {words[2]}")
        return ("keras-defusion", words[1])
    if len(words) >= 3 and words[:2] == ["python", "-m"]:
        return ("python -m", words[2])
    return None


def flags_of(command):
    """The `--flags` a command line names (values and brackets dropped)."""
    words = command.replace("[", " ").replace("]", " ").split()
    return sorted({word.split("=")[0].rstrip(",.;:)") for word in words
                   if word.startswith("--") and len(word) > 2})


def split_command(command):
    return shlex.split(command)
