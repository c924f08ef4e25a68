"""Reading ids that occur more than once in one ingest transaction (red team A2).

The database keeps one row per reading id; the writer's staging path stored one of the
repeats and the receipt counted every one as stored.  Before writing, each repeat is
decided here, so the receipt counts exactly:

- within one message, a repeat with the same content as the id's first occurrence is a
  *duplicate* (a gateway that enqueued the same record twice); with different content
  it is a *dead letter* with the reason :data:`REPEATED_WITH_OTHER_VALUES` (which of the
  two is right cannot be told; the first stays, the other is kept for an operator);
- across the messages of one transaction, a later message's occurrence is a duplicate,
  as it would be in a later transaction (the first arrival stays).

Only readings that passed validation and the custody check take part (a reading refused
for custody must not turn its custodian's twin into a "duplicate"); the usual batch (no
id twice) costs one set of its ids.
"""

from __future__ import annotations

from ingest.columns import Rejected, Split, reading_payload

REPEATED_WITH_OTHER_VALUES = "reading id repeated with different values"


def set_aside_repeats(split: Split) -> dict[int, int]:
    """Take the repeats out of ``split.by_table`` (those with other content go to
    ``split.rejected``); returns the duplicates set aside per origin (message index)."""
    flat = split.flat
    readings = flat.readings
    ids = [r.id for r in readings]
    if len(set(ids)) == len(ids):
        return {}
    duplicates: dict[int, int] = {}
    first_of_id: dict[str, int] = {}  # the occurrence that is written
    first_in_message: dict[tuple[int, str], int] = {}
    keep: set[int] = set()
    for i in sorted(i for located in split.by_table.values() for i in located):
        rid, origin = ids[i], flat.origin[i]
        first = first_in_message.get((origin, rid))
        if first is not None:
            if readings[i] == readings[first]:
                duplicates[origin] = duplicates.get(origin, 0) + 1
            else:
                source = flat.origins[origin]
                split.rejected.append(
                    Rejected(
                        source.topic,
                        source.gateway,
                        readings[i].device,
                        reading_payload(source.gateway, readings[i]),
                        REPEATED_WITH_OTHER_VALUES,
                        flat.position[i],
                    )
                )
            continue
        first_in_message[(origin, rid)] = i
        if rid in first_of_id:  # an earlier message of this transaction holds it
            duplicates[origin] = duplicates.get(origin, 0) + 1
            continue
        first_of_id[rid] = i
        keep.add(i)
    for table, located in list(split.by_table.items()):
        kept = [i for i in located if i in keep]
        if kept:
            split.by_table[table] = kept
        else:
            del split.by_table[table]
    return duplicates
