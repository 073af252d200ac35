#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""man-from-help.py — a man page from a template and what the built program's --help prints.

Usage: man-from-help.py nexd BINARY TEMPLATE > nexd.8
       man-from-help.py nex BINARY TEMPLATE > nex.1

The template (man/*.in, its directories already filled in by Makefile.am's $(edit)) holds the prose; this fills
in the parts that come from the programs' option tables, through their --help, so the page lists exactly what
--help does:
  nexd  @OPTIONS@          every entry of `nexd --help` (server/config.c's table)
  nex   @GLOBAL_OPTIONS@   the global options of `nex --help`
        @COMMANDS@         every command of `nex --help`, each with its usage and options from `nex CMD --help`
                           (cli/nex.c's tables), the global ones left out

The --help form read here: an entry is two to six spaces, the option column, at least two spaces, its text; a line
indented to the text's column (or further) continues the entry above.  A line of an option section that is
neither stops the build: a page silently missing an option is worse than no page.
"""

import re
import subprocess
import sys

ENTRY = re.compile(r"^ {2,6}(\S.*?)  +(\S.*)$")
CONTINUATION = re.compile(r"^ {8,}(\S.*)$")


def fail(msg):
    sys.exit(f"man-from-help.py: {msg}")


def esc(text):
    """TEXT as roff source: backslashes and hyphens escaped (options copy and paste as typed), no control line."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def help_of(binary, *args):
    r = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        fail(f"`{binary} {' '.join(args)} --help` exited with status {r.returncode}: {r.stderr.strip()}")
    return r.stdout.splitlines()


def entries(lines, what):
    """[(left, text)] of the option entries in LINES (up to the first blank line), continuations joined."""
    out = []
    for line in lines:
        if not line.strip():
            break
        m = ENTRY.match(line)
        c = CONTINUATION.match(line)
        if c and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + c.group(1))
        elif m:
            out.append((m.group(1), m.group(2)))
        else:
            fail(f"cannot read this line of {what}: {line!r}")
    if not out:
        fail(f"no options found in {what}")
    return out


def option_column(left):
    """'-n, --name VALUE' as roff: flags bold, their value italic."""
    words = []
    for word in left.split():
        if word.startswith("-"):
            comma = word.endswith(",")
            words.append("\\fB" + esc(word.rstrip(",")) + "\\fR" + ("," if comma else ""))
        else:
            words.append("\\fI" + esc(word) + "\\fR")
    return " ".join(words)


def tagged(items):
    return "\n".join(f".TP\n{option_column(left)}\n{esc(text)}" for left, text in items)


def section(lines, title, what):
    """The lines after the one that is TITLE."""
    try:
        return lines[lines.index(title) + 1:]
    except ValueError:
        fail(f"no `{title}` in {what}")


def nexd_parts(binary):
    lines = help_of(binary)
    first = next((i for i, line in enumerate(lines) if line.startswith("  -")), None)
    if first is None:
        fail("no options in `nexd --help`")
    return {"OPTIONS": tagged(entries(lines[first:], "`nexd --help`"))}


def nex_parts(binary):
    top = help_of(binary)
    commands = entries(section(top, "Commands:", "`nex --help`"), "the commands of `nex --help`")
    global_opts = entries(section(top, "Global options (every command):", "`nex --help`"),
                          "the global options of `nex --help`")
    global_flags = {w.rstrip(",") for left, _ in global_opts for w in left.split() if w.startswith("--")}
    pages = []
    for words, summary in commands:
        what = f"`nex {words} --help`"
        lines = help_of(binary, *words.split())
        if not lines or not lines[0].startswith("Usage: "):
            fail(f"{what} does not start with a Usage: line")
        usage = lines[0][len("Usage: "):]
        own = [(left, text) for left, text in entries(section(lines, "Options:", what), what)
               if not {w.rstrip(",") for w in left.split()} & global_flags]
        page = f'.SS "{esc("nex " + words)}"\n{esc(summary)}.\n.PP\n.B Usage:\n{esc(usage)}'
        if own:
            page += "\n" + tagged(own)
        pages.append(page)
    return {"GLOBAL_OPTIONS": tagged(global_opts), "COMMANDS": "\n".join(pages)}


def main(argv):
    if len(argv) != 4 or argv[1] not in ("nexd", "nex"):
        sys.exit(__doc__.split("\n\n")[1])
    kind, binary, template = argv[1:]
    parts = nexd_parts(binary) if kind == "nexd" else nex_parts(binary)
    with open(template) as f:
        page = f.read()
    for name, text in parts.items():
        if f"@{name}@" not in page:
            fail(f"{template} has no @{name}@")
        page = page.replace(f"@{name}@", text)
    left = re.findall(r"@[A-Za-z_]+@", page)
    if left:
        fail(f"{template}: nothing fills {', '.join(sorted(set(left)))}")
    sys.stdout.write(page)


if __name__ == "__main__":
    main(sys.argv)
