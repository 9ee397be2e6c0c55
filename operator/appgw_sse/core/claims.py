"""Claims on the gateway itself: every operator's needs, and the original values, as ARM tags.

Several clusters (blue/green upgrades) may run an operator each against one gateway. Each
records what its routes need on the gateway, in the same PUT that sets the values (one
If-Match, so values and claims never disagree), and the values found before any of them
wrote, so that whichever deletes last restores them:

    appgw-sse.claim.<owner>   buffering=off;timeout:notifications-http=135;draining:x=30
    appgw-sse.originals       instance=1a2b3c4d;buffering=on;timeout:notifications-http=30

Keys are the fields' `tag_key`, per backend setting after a colon; `-` marks an original that was
no property at all; values are the fields' (`draining:x=-45`: off, 45 s stored). A value longer
than ARM's 256 characters continues in `<name>.1`, `<name>.2`, ... The originals of a place are
written by its first claimant, never overwritten, and removed with its last claim. `instance` is
the start of the gateway's resourceGuid: tags copied onto a gateway created again under the same id
(from an exported template, say) speak of another instance and are disregarded. Tags outside the
`appgw-sse.` prefix are the user's and never touched.
"""

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from appgw_sse.core.fields import FIELDS, OwnedField, Place, Value

PREFIX = "appgw-sse."
CLAIM = PREFIX + "claim."
ORIGINALS = PREFIX + "originals"
ABSENT = "-"
# ARM's limits (docs: azure-resource-manager/management/tag-resources#limitations).
MAX_TAGS = 50
MAX_VALUE = 256
OWNER_SHAPE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_CHUNK = re.compile(r"(?P<base>.*?)(?:\.(?P<n>[1-9][0-9]*))?", re.DOTALL)
_INSTANCE = re.compile(r"instance=(?P<guid>[0-9a-f]{8})")
_ENTRY = re.compile(r"(?P<key>[a-z]+)(?::(?P<setting>[A-Za-z0-9_.-]+))?=(?P<value>[^;=]+)")
_BY_KEY: dict[str, OwnedField] = {f.tag_key: f for f in FIELDS}


def check_owner(owner: str) -> str:
    """An owner id as it can appear in a tag name; ValueError saying what is wrong."""
    if not OWNER_SHAPE.fullmatch(owner):
        raise ValueError(
            f"{owner!r} is not an owner id: use 1 to 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return owner


def default_owner(namespace: str, cluster_uid: str) -> str:
    """The owner id of an installation that names none: its namespace (one operator works per
    namespace, the holder of its Lease) and its cluster (kube-system's uid, fixed for the
    cluster's life), so that two clusters, or two installations, never share one."""
    digest = hashlib.sha256(cluster_uid.encode()).hexdigest()[:8]
    return check_owner(f"{namespace[:54].rstrip('-')}-{digest}")


@dataclass(frozen=True)
class Original:
    value: Value
    absent: bool = False  # no property at all: restored by removing it


@dataclass(frozen=True)
class Claims:
    """The claims on one gateway: original values per place, and each owner's needs."""

    originals: Mapping[Place, Original] = field(default_factory=dict)
    needs: Mapping[str, Mapping[Place, Value]] = field(default_factory=dict)
    instance: str | None = None  # the first 8 hex of the gateway's resourceGuid

    @property
    def is_empty(self) -> bool:
        return not self.originals and not any(self.needs.values())

    def same_as(self, other: "Claims") -> bool:
        """The same originals and needs (whichever instance either was read from)."""
        return self.originals == other.originals and self.needs == other.needs

    def owners(self) -> list[str]:
        return sorted(owner for owner, needs in self.needs.items() if needs)

    def combined(self, place: Place, owners: Iterable[str] | None = None) -> Value | None:
        """The combination of the needs of `owners` (default: all) at `place`; None: none."""
        result: Value | None = None
        for owner in self.owners() if owners is None else owners:
            need = self.needs.get(owner, {}).get(place)
            if need is not None:
                result = need if result is None else place.field.combine(result, need)
        return result

    def others(self, owner: str) -> list[str]:
        return [o for o in self.owners() if o != owner]

    def implied(self, place: Place) -> Value | None:
        """The value these claims put at `place` (None: the place has no original recorded)."""
        original = self.originals.get(place)
        if original is None:
            return None
        need = self.combined(place)
        return original.value if need is None else place.field.settle(original.value, need)

    def with_needs(self, owner: str, needs: Mapping[Place, Value]) -> "Claims":
        """`owner`'s claim replaced by `needs`; originals no claim refers to any more dropped."""
        all_needs = {o: n for o, n in self.needs.items() if o != owner and n}
        if needs:
            all_needs[owner] = dict(needs)
        claimed = {p for n in all_needs.values() for p in n}
        originals = {p: o for p, o in self.originals.items() if p in claimed}
        return replace(self, originals=originals, needs=dict(sorted(all_needs.items())))

    def with_originals(self, originals: Mapping[Place, Original]) -> "Claims":
        """These originals added where none is recorded yet (the first claimant's)."""
        merged = dict(self.originals)
        for place, original in originals.items():
            merged.setdefault(place, original)
        return replace(self, originals=merged)

    def describe(self, owner: str) -> str:
        """One owner's needs in plain words, for `plan`, status and Events."""
        needs = self.needs.get(owner, {})
        return "; ".join(
            f"{p.field.describe(p.setting)} {p.field.show(v)}"
            for p, v in sorted(needs.items(), key=_order)
        )

    def tags(self) -> dict[str, str]:
        """The tags that record these claims (none for no claims)."""
        result: dict[str, str] = {}
        if self.originals:
            entries = [f"instance={self.instance}"] if self.instance else []
            entries += [
                _entry(p, ABSENT if o.absent else p.field.tag_text(o.value))
                for p, o in sorted(self.originals.items(), key=_order)
            ]
            result |= _chunked(ORIGINALS, entries)
        for owner in self.owners():
            entries = [
                _entry(p, p.field.tag_text(v))
                for p, v in sorted(self.needs[owner].items(), key=_order)
            ]
            result |= _chunked(CLAIM + owner, entries)
        return result


def _order(item: tuple[Place, Any]) -> tuple[int, str]:
    return FIELDS.index(item[0].field), item[0].setting or ""


def _entry(place: Place, text: str) -> str:
    key = place.field.tag_key
    return f"{key}:{place.setting}={text}" if place.setting is not None else f"{key}={text}"


def _chunked(base: str, entries: list[str]) -> dict[str, str]:
    """Entries joined by ';' into values of at most MAX_VALUE characters: `base`, `base.1`..."""
    values: list[str] = []
    for entry in entries:
        if values and len(values[-1]) + 1 + len(entry) <= MAX_VALUE:
            values[-1] += ";" + entry
        else:
            values.append(entry)
    return {(base if i == 0 else f"{base}.{i}"): value for i, value in enumerate(values)}


def ours(name: str) -> bool:
    """Whether a tag is one of the claim system's (ARM's tag names are case-insensitive)."""
    return name.lower().startswith(PREFIX)


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in tags.items() if not ours(name)}


def tags_of(document: Mapping[str, Any]) -> dict[str, str]:
    tags = document.get("tags")
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {}


def _parse_entries(
    name: str, value: str, original: bool
) -> tuple[dict[Place, Original], list[str]]:
    found: dict[Place, Original] = {}
    problems = []
    for text in value.split(";"):
        if original and _INSTANCE.fullmatch(text):
            continue  # read by parse()
        match = _ENTRY.fullmatch(text)
        owned = _BY_KEY.get(match["key"]) if match else None
        if match is None or owned is None or owned.per_setting != bool(match["setting"]):
            problems.append(f"tag {name}: {text!r} is not <field>[:<setting>]=<value>")
            continue
        place = owned.at(match["setting"])
        if place in found:
            problems.append(f"tag {name}: {place.label} appears twice")
            continue
        raw = match["value"]
        try:
            if raw == ABSENT and original and owned.absent_value is not None:
                found[place] = Original(owned.absent_value, absent=True)
            else:
                found[place] = Original(owned.from_tag(raw))
        except ValueError as exc:
            problems.append(f"tag {name}: {place.label}: {exc}")
    return found, problems


def parse(tags: Mapping[str, str]) -> tuple[Claims, list[str]]:
    """The claims recorded in a gateway's tags, and what is wrong with them: every tag under the
    prefix that is not a well-formed claim or originals tag is a problem (never guessed at)."""
    groups: dict[str, dict[int, tuple[str, str]]] = {}
    problems: list[str] = []
    for name, value in sorted(tags.items()):
        if not ours(name):
            continue
        chunk = _CHUNK.fullmatch(name.lower())
        assert chunk is not None  # the pattern matches every string
        base, index = chunk["base"], int(chunk["n"] or 0)
        if base != ORIGINALS and not (
            base.startswith(CLAIM) and OWNER_SHAPE.fullmatch(base[len(CLAIM) :])
        ):
            problems.append(
                f"tag {name}: not a tag of appgw-sse (expected {ORIGINALS} or "
                f"{CLAIM}<owner>), yet it uses the {PREFIX} prefix"
            )
            continue
        groups.setdefault(base, {})[index] = (name, value)
    originals: dict[Place, Original] = {}
    needs: dict[str, dict[Place, Value]] = {}
    instance: str | None = None
    for base, chunks in sorted(groups.items()):
        if sorted(chunks) != list(range(len(chunks))):
            names = ", ".join(chunks[i][0] for i in sorted(chunks))
            problems.append(f"tags {names}: continuation without its predecessors")
            continue
        entries: dict[Place, Original] = {}
        for index in sorted(chunks):
            name, value = chunks[index]
            found, wrong = _parse_entries(name, value, original=base == ORIGINALS)
            problems += wrong
            for place in set(found) & set(entries):
                problems.append(f"tag {name}: {place.label} appears twice")
            entries |= found
        if base == ORIGINALS:
            originals = entries
            guids = [m["guid"] for _, v in chunks.values() for m in _INSTANCE.finditer(v)]
            instance = guids[0] if guids else None
        else:
            needs[base[len(CLAIM) :]] = {p: o.value for p, o in entries.items()}
    claims = Claims(originals=originals, needs=dict(sorted(needs.items())), instance=instance)
    return claims, problems


def instance_key(document: Mapping[str, Any]) -> str | None:
    """The first 8 hex of the gateway's resourceGuid (ARM's id of this instance), if known."""
    guid = (document.get("properties") or {}).get("resourceGuid")
    return str(guid).lower().replace("-", "")[:8] if guid else None


def read(document: Mapping[str, Any]) -> tuple[Claims, list[str], bool]:
    """The claims on this instance of the gateway, their problems, and whether the tags held
    claims of an earlier instance (disregarded: the values they speak of are gone)."""
    claims, problems = parse(tags_of(document))
    live = instance_key(document)
    if claims.instance is not None and live is not None and claims.instance != live:
        return Claims(instance=live), problems, True
    return replace(claims, instance=live or claims.instance), problems, False


def with_tags(document: Mapping[str, Any], claims: Claims) -> dict[str, Any]:
    """A copy of the document whose claim tags are exactly `claims`'; the user's tags kept."""
    result = dict(document)
    result["tags"] = user_tags(tags_of(document)) | claims.tags()
    return result


def tag_room(document: Mapping[str, Any]) -> int:
    """How many tags the claim system may use on this gateway: ARM's limit minus the user's."""
    return MAX_TAGS - len(user_tags(tags_of(document)))


def others_status(document: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """status.gateway.claims: the other owners' claims on the gateway (nothing when none)."""
    claims, _, _ = read(document)
    others = [{"owner": o, "needs": claims.describe(o)} for o in claims.others(owner)]
    return {"claims": others} if others else {}
