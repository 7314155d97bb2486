"""Configuration lists kept in YAML files that administrators edit while the hub runs."""

import os

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: 100,000 datasets load in seconds


def file_stamp(path):
    """What changes when the file is edited or replaced (raises OSError if it is gone)."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def read_section(path, section, error, what):
    """``(stamp, list)`` of the top-level ``section:`` list of a YAML file; ``error`` on failure."""
    try:
        stamp = file_stamp(path)
        with open(path, "rb") as f:
            doc = yaml.load(f, Loader=_LOADER)
    except (OSError, yaml.YAMLError) as e:
        raise error(f"Cannot read {what} {path}: {e}") from e
    entries = doc.get(section) if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise error(f"{path}: expected a top-level '{section}:' list")
    return stamp, entries


def parse_records(entries, from_dict, key, error, source, kind):
    """Build records with ``from_dict``, each ``key`` attribute unique; ``error`` says which entry is wrong."""
    records, seen = [], set()
    for i, entry in enumerate(entries):
        try:
            record = from_dict(entry)
        except ValueError as e:
            raise error(f"{source}: {kind} #{i + 1}: {e}") from e
        value = getattr(record, key)
        if value in seen:
            raise error(f"{source}: {kind} {key} {value!r} appears twice")
        seen.add(value)
        records.append(record)
    return records
