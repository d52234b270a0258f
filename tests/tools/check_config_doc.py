"""Compare docs/configuration.md with the attrs sections of hmacfs_core/config.py.

For every section class (recursively for sub-table classes) check that each key
appears in a table row of that section's part of the doc, with a type and a
default, and that every default written in the doc reads, through the real
loader, as the attrs default. Also flag keys in the doc's tables that the code
does not have.
"""

import re
import sys
from pathlib import Path

import attrs

from hmacfs_core import config as cfg_module

DOC = Path(sys.argv[1])
text = DOC.read_text()

# Split by "## `[name]`" headings.
sections = {}
for match in re.finditer(r"^## `\[([a-z_]+)\]`\n(.*?)(?=^## |\Z)", text, re.M | re.S):
    sections[match[1]] = match[2]


def tables(body):
    """Yield (header cells, rows) for each markdown table."""
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        if (
            lines[i].startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\|[-| ]+\|$", lines[i + 1])
        ):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            yield header, rows
        else:
            i += 1


def ticked(cell):
    m = re.fullmatch(r"`([^`]+)`", cell)
    return m[1] if m else None


problems = []


def check_value(section_path, key, written, expected):
    """Read `written` (a doc default) through the real loader and compare."""
    if written in ("none", "see below", "—"):
        if written == "none" and expected not in (None, ()):
            problems.append(
                f"{section_path}.{key}: doc default none, code {expected!r}"
            )
        return
    value = written.strip("`")
    # Table cells such as 64 KiB / 1 MiB are sizes without quotes.
    if re.fullmatch(r"[0-9.]+ ?[KMG]iB", value):
        value = f'"{value}"'
    parts = section_path.split(".")
    doc = "".join(f"[{'.'.join(parts)}]\n") + f"{key} = {value}\n"
    try:
        cfg = cfg_module.parse_config(doc)
    except Exception as error:
        problems.append(
            f"{section_path}.{key}: doc default {written} does not load: {error}"
        )
        return
    got = cfg
    for part in parts + [key]:
        got = getattr(got, part)
    if got != expected:
        problems.append(
            f"{section_path}.{key}: doc default {written} reads {got!r}, "
            f"code default {expected!r}"
        )


def check_class(cls, section_path, body, instance):
    rows_by_key = {}
    kind_tables = []
    for header, rows in tables(body):
        if header and header[0] == "key":
            for row in rows:
                k = ticked(row[0])
                if k:
                    rows_by_key.setdefault(k, []).append(
                        dict(zip(header, row, strict=False))
                    )
        elif header and header[0] in ("class", "kind"):
            kind_tables.append((header, rows))
    for field in attrs.fields(cls):
        name = field.name
        if cls is cfg_module.PluginsConfig and name == "settings":
            if "[plugins.<name>]" not in body:
                problems.append(
                    "plugins.settings: [plugins.<name>] tables not documented"
                )
            continue
        default = getattr(instance, name)
        if attrs.has(type(default)) and not isinstance(
            default, cfg_module.ListenAddress
        ):
            # A sub-table: its name must be mentioned, and its keys documented
            # (a key table for the sub-table class) with per-table defaults.
            if (
                f"`{name}`" not in body
                and f"_{name.split('_', 1)[-1]}`" not in body
                and name not in body
            ):
                problems.append(f"{section_path}.{name}: sub-table not mentioned")
            sub_cls = type(default)
            for sub in attrs.fields(sub_cls):
                if sub.name not in rows_by_key:
                    problems.append(
                        f"{section_path}.{name}.{sub.name}: key not in a table"
                    )
            # Per-table defaults, from the class/kind tables.
            label = name.removeprefix("strategy_")
            found = False
            for header, rows in kind_tables:
                for row in rows:
                    if ticked(row[0]) == label:
                        found = True
                        for col, cell in zip(header[1:], row[1:], strict=False):
                            sub_key = ticked(col)
                            if sub_key:
                                check_value(
                                    f"{section_path}.{name}",
                                    sub_key,
                                    cell,
                                    getattr(default, sub_key),
                                )
            if not found:
                problems.append(f"{section_path}.{name}: no row of defaults")
            continue
        if name not in rows_by_key:
            problems.append(f"{section_path}.{name}: key not in a table")
            continue
        row = rows_by_key[name][0]
        if not row.get("type"):
            problems.append(f"{section_path}.{name}: no type")
        if "default" not in row:
            problems.append(f"{section_path}.{name}: no default column")
        else:
            check_value(section_path, name, row["default"], default)
        if not row.get("effect"):
            problems.append(f"{section_path}.{name}: no effect")
    # Stale keys: rows in the section's key tables the code lacks.
    known = {f.name for f in attrs.fields(cls)}
    for f in attrs.fields(cls):
        d = getattr(instance, f.name)
        if attrs.has(type(d)) and not isinstance(d, cfg_module.ListenAddress):
            known |= {s.name for s in attrs.fields(type(d))}
    extra_ok = set()
    if cls is cfg_module.PluginsConfig:
        from hmacfs_plugins.network_policy import SETTING_NAMES
        from hmacfs_plugins.rollback_monitor import RollbackSettings

        extra_ok = set(SETTING_NAMES) | {a.name for a in attrs.fields(RollbackSettings)}
        extra_ok.add("[plugins.<name>]")
    for k in rows_by_key:
        if k not in known and k not in extra_ok:
            problems.append(f"{section_path}.{k}: documented but not in the code")


for section in attrs.fields(cfg_module.Config):
    body = sections.get(section.name)
    if body is None:
        problems.append(f"[{section.name}]: no section in the doc")
        continue
    check_class(
        section.type
        if isinstance(section.type, type)
        else getattr(cfg_module, section.type),
        section.name,
        body,
        getattr(cfg_module.Config(), section.name),
    )

for name in sections:
    if name not in attrs.fields_dict(cfg_module.Config):
        problems.append(f"[{name}]: documented section the code does not have")

print("\n".join(problems) or "configuration.md covers every key")
sys.exit(1 if problems else 0)
