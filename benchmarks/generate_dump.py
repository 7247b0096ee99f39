"""Generate a synthetic Discogs dump in the CURRENT layout (no images, no release status, empty
sub-elements left out, `<master_id>` always present with 0 = none, `<series>`), of any size.

    python benchmarks/generate_dump.py --releases 1000000 [--version 20261101] [--out benchmarks/data]

Counts follow the real 2026 ratios per release: 0.53 artists, 0.125 labels, 0.133 masters.
Cross-references are consistent: release/master credits point at generated artists, release
labels and companies at generated labels, `master_id` at generated masters, a master's
`main_release` at a generated release; artists have members/groups/aliases among themselves and
labels parent/sub-labels. Sizes are realistic: a typical release is 2-4 KB of XML (8-12 tracks,
credits, identifiers, videos); about 1 release in 5,000 is a box set with 1,000-7,000 tracks.
Deterministic for a given seed. Output: discogs_<version>_<type>.xml.gz (gzip level 3).

`churn` makes the dump a later version of the one without it (a monthly update): of every type, a
`churn` share of the records is touched: four fifths of those change (name or title), one fifth is
gone, and as many new records as are gone follow the last id. Half of the changed masters and
releases also gain a genre, so their relationships change too (an edit of the credits or tags);
the other changes leave every relationship as it was (an edit of a title, notes or tracklist).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

DEFAULT_OUT = Path(__file__).resolve().parent / "data"
GENRES = [
    "Electronic",
    "Rock",
    "Pop",
    "Folk, World, & Country",
    "Funk / Soul",
    "Jazz",
    "Classical",
    "Hip Hop",
]
STYLES = ["Deep House", "Techno", "Tech House", "Ambient", "Punk", "Indie Rock", "Baroque", "Soul", "Disco"]
ROLES = ["Producer", "Written-By", "Mastered By", "Lacquer Cut By", "Photography By [Cover]", "Mixed By"]
COUNTRIES = ["US", "UK", "Germany", "France", "Sweden", "Japan", "Netherlands", "Italy", "Canada"]
QUALITY = ["Needs Vote", "Needs Vote", "Needs Vote", "Correct", "Complete and Correct"]
WORDS = [
    "the",
    "of",
    "and",
    "night",
    "love",
    "dance",
    "blue",
    "deep",
    "sound",
    "machine",
    "dream",
    "city",
    "fire",
    "light",
    "heart",
    "soul",
    "electric",
    "summer",
    "rain",
    "star",
    "time",
    "world",
    "dark",
    "gold",
    "silver",
    "river",
    "ocean",
]


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).title()


def sizes(releases: int) -> dict[str, int]:
    return {
        "releases": releases,
        "artists": max(10, int(releases * 0.53)),
        "labels": max(5, int(releases * 0.125)),
        "masters": max(5, int(releases * 0.133)),
    }


class Gen:
    def __init__(self, releases: int, seed: int, id_base: int = 0) -> None:
        self.n = sizes(releases)
        self.seed = seed
        self.b = id_base  # every id (and reference) is shifted by this; names keep the index

    def rng(self, salt: int) -> random.Random:
        return random.Random(self.seed * 1_000_003 + salt)

    def artist_name(self, i: int) -> str:
        return f"{words(self.rng(i), 2)} ({i})"

    def label_name(self, i: int) -> str:
        return f"{words(self.rng(10_000_000 + i), 2)} Records ({i})"

    def credit(self, rng: random.Random, role: bool) -> str:
        aid = rng.randint(1, self.n["artists"])
        parts = [f"<artist><id>{self.b + aid}</id><name>{escape(self.artist_name(aid))}</name>"]
        if rng.random() < 0.15:
            parts.append(f"<anv>{escape(words(rng, 1))}</anv>")
        if rng.random() < 0.1:
            parts.append("<join>&amp;</join>")
        if role:
            parts.append(f"<role>{rng.choice(ROLES)}</role>")
            if rng.random() < 0.2:
                parts.append(f"<tracks>A{rng.randint(1, 3)}, B{rng.randint(1, 3)}</tracks>")
        parts.append("</artist>")
        return "".join(parts)

    def artist(self, i: int) -> str:
        rng = self.rng(20_000_000 + i)
        out = [f"<artist><id>{self.b + i}</id><name>{escape(self.artist_name(i))}</name>"]
        if rng.random() < 0.45:
            out.append(f"<realname>{escape(words(rng, 3))}</realname>")
        if rng.random() < 0.47:
            out.append(f"<profile>{escape(words(rng, rng.randint(10, 80)))} [a={i}]&#13;\nMore.</profile>")
        out.append(f"<data_quality>{rng.choice(QUALITY)}</data_quality>")
        if rng.random() < 0.4:
            out.append(f"<urls><url>https://example.com/artist/{i}</url></urls>")
        if rng.random() < 0.5:
            out.append(
                "<namevariations>"
                + "".join(f"<name>{words(rng, 2)}</name>" for _ in range(rng.randint(1, 4)))
            )
            out.append("</namevariations>")
        n = self.n["artists"]
        for tag, p in (("aliases", 0.2), ("members", 0.08), ("groups", 0.15)):
            if rng.random() < p:
                ids = [rng.randint(1, n) for _ in range(rng.randint(1, 4))]
                out.append(
                    f"<{tag}>"
                    + "".join(f'<name id="{self.b + a}">{escape(self.artist_name(a))}</name>' for a in ids)
                    + f"</{tag}>"
                )
        out.append("</artist>")
        return "".join(out)

    def label(self, i: int) -> str:
        rng = self.rng(30_000_000 + i)
        n = self.n["labels"]
        out = [f"<label><id>{self.b + i}</id><name>{escape(self.label_name(i))}</name>"]
        if rng.random() < 0.3:
            out.append(f"<contactinfo>{escape(words(rng, 6))}&#13;\nP.O. Box {i}</contactinfo>")
        if rng.random() < 0.6:
            out.append(f"<profile>{escape(words(rng, rng.randint(5, 60)))}</profile>")
        out.append(f"<data_quality>{rng.choice(QUALITY)}</data_quality>")
        if rng.random() < 0.3 and i > 1:
            parent = rng.randint(1, i - 1)
            out.append(f'<parentLabel id="{self.b + parent}">{escape(self.label_name(parent))}</parentLabel>')
        out.append("<urls/>" if rng.random() < 0.7 else f"<urls><url>http://label{i}.example</url></urls>")
        if rng.random() < 0.15:
            subs = [rng.randint(1, n) for _ in range(rng.randint(1, 6))]
            out.append(
                "<sublabels>"
                + "".join(f'<label id="{self.b + s}">{escape(self.label_name(s))}</label>' for s in subs)
                + "</sublabels>"
            )
        out.append("</label>")
        return "".join(out)

    def master(self, i: int) -> str:
        rng = self.rng(40_000_000 + i)
        main = rng.randint(1, self.n["releases"])
        out = [f'<master id="{self.b + i}"><main_release>{self.b + main}</main_release><artists>']
        out.extend(self.credit(rng, False) for _ in range(rng.choice((1, 1, 1, 2))))
        out.append("</artists><genres>" + f"<genre>{escape(rng.choice(GENRES))}</genre></genres><styles>")
        out.extend(f"<style>{s}</style>" for s in rng.sample(STYLES, rng.randint(1, 3)))
        out.append(f"</styles><year>{rng.choice((0, rng.randint(1950, 2026)))}</year>")
        out.append(f"<title>{escape(words(rng, rng.randint(1, 5)))}</title>")
        out.append(f"<data_quality>{rng.choice(QUALITY)}</data_quality>")
        if rng.random() < 0.4:
            out.append(self.videos(rng))
        out.append("</master>")
        return "".join(out)

    def videos(self, rng: random.Random) -> str:
        parts = ["<videos>"]
        for _ in range(rng.randint(1, 4)):
            parts.append(
                f'<video src="https://www.youtube.com/watch?v={rng.getrandbits(40):x}" '
                f'duration="{rng.randint(60, 600)}" embed="true"><title>{escape(words(rng, 4))}</title>'
                f"<description>{escape(words(rng, 8))}</description></video>"
            )
        parts.append("</videos>")
        return "".join(parts)

    def track(self, rng: random.Random, pos: str, credits: bool) -> str:
        parts = [f"<track><position>{pos}</position><title>{escape(words(rng, rng.randint(1, 4)))}</title>"]
        if rng.random() < 0.55:
            parts.append(f"<duration>{rng.randint(1, 9)}:{rng.randint(0, 59):02d}</duration>")
        if credits and rng.random() < 0.3:
            parts.append("<extraartists>" + self.credit(rng, True) + "</extraartists>")
        parts.append("</track>")
        return "".join(parts)

    def release(self, i: int) -> str:
        rng = self.rng(50_000_000 + i)
        n = self.n
        out = [f'<release id="{self.b + i}"><artists>']
        out.extend(self.credit(rng, False) for _ in range(rng.choice((1, 1, 1, 2))))
        out.append(f"</artists><title>{escape(words(rng, rng.randint(1, 5)))}</title><labels>")
        for _ in range(rng.choice((1, 1, 2))):
            lid = rng.randint(1, n["labels"])
            out.append(
                f"<label name={quoteattr(self.label_name(lid))} "
                f'catno="{words(rng, 1)[:3].upper()} {i}" id="{self.b + lid}"/>'
            )
        out.append("</labels>")
        if rng.random() < 0.8:
            out.append("<extraartists>")
            out.extend(self.credit(rng, True) for _ in range(rng.randint(1, 8)))
            out.append("</extraartists>")
        out.append(
            f'<formats><format name="Vinyl" qty="{rng.randint(1, 3)}" text="">'
            '<descriptions><description>12"</description><description>33 &#8531; RPM</description>'
            "</descriptions></format></formats>"
        )
        out.append(f"<genres><genre>{escape(rng.choice(GENRES))}</genre></genres><styles>")
        out.extend(f"<style>{s}</style>" for s in rng.sample(STYLES, rng.randint(1, 3)))
        out.append("</styles>")
        if rng.random() < 0.97:
            out.append(f"<country>{rng.choice(COUNTRIES)}</country>")
        year = rng.randint(1950, 2026)
        out.append(f"<released>{rng.choice((str(year), f'{year}-{rng.randint(1, 12):02d}-00'))}</released>")
        if rng.random() < 0.5:
            out.append(f"<notes>{escape(words(rng, rng.randint(5, 120)))}&#13;\nRecorded somewhere.</notes>")
        out.append(f"<data_quality>{rng.choice(QUALITY)}</data_quality>")
        master = rng.randint(1, n["masters"]) if rng.random() < 0.58 else 0
        main = "true" if master and rng.random() < 0.3 else "false"
        master_ref = self.b + master if master else 0
        out.append(f'<master_id is_main_release="{main}">{master_ref}</master_id><tracklist>')
        box = rng.random() < 0.0002
        ntracks = rng.randint(1000, 7000) if box else rng.randint(4, 14)
        out.extend(
            self.track(rng, f"{k // 20 + 1}-{k % 20 + 1}" if box else f"A{k + 1}", True)
            for k in range(ntracks)
        )
        out.append("</tracklist>")
        if rng.random() < 0.7:
            out.append(
                f'<identifiers><identifier type="Barcode" value="{rng.getrandbits(40)}"/>'
                f'<identifier type="Matrix / Runout" description="Side A" value="XX {i} A1"/></identifiers>'
            )
        if rng.random() < 0.3:
            out.append(self.videos(rng))
        if rng.random() < 0.5:
            out.append("<companies>")
            for _ in range(rng.randint(1, 3)):
                cid = rng.randint(1, n["labels"])
                out.append(
                    f"<company><id>{self.b + cid}</id><name>{escape(self.label_name(cid))}</name>"
                    "<entity_type>23</entity_type><entity_type_name>Recorded At</entity_type_name></company>"
                )
            out.append("</companies>")
        if rng.random() < 0.07:
            sid = rng.randint(1, n["labels"])
            out.append(
                f"<series><series name={quoteattr(self.label_name(sid))} "
                f'catno="{i % 100}" id="{self.b + sid}"/></series>'
            )
        out.append("</release>")
        return "".join(out)


# The element whose text a changed record of each type gets a suffix in (its first occurrence).
_CHANGED_TAG = {"artists": "</name>", "labels": "</name>", "masters": "</title>", "releases": "</title>"}
# A genre no generated record has: added to half of the changed masters and releases.
_RELINK = ("</genres>", "<genre>Blues</genre></genres>")


def churned(data_type: str, count: int, make: Callable[[int], str], churn: float, seed: int) -> Iterator[str]:
    """The records of a later version: `make(i)` for i in 1..count with the churn applied, then the
    new records (ids count+1..)."""
    gone = 0
    for i in range(1, count + 1):
        roll = random.Random(seed * 7_000_003 + i * 13 + len(data_type)).random()
        if roll < churn / 5:
            gone += 1
        elif roll < churn:
            record = make(i).replace(_CHANGED_TAG[data_type], " (revised)" + _CHANGED_TAG[data_type], 1)
            yield record.replace(*_RELINK, 1) if i % 2 else record
        else:
            yield make(i)
    for i in range(count + 1, count + gone + 1):
        yield make(i)


def write(path: Path, root: str, records: Iterable[str], level: int) -> int:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with gzip.open(tmp, "wb", compresslevel=level) as fh:
        fh.write(f"<{root}>\n".encode())
        buf: list[str] = []
        for record in records:
            buf.append(record)
            buf.append("\n")
            if len(buf) >= 2000:
                fh.write("".join(buf).encode())
                buf.clear()
        fh.write("".join(buf).encode())
        fh.write(f"</{root}>\n".encode())
    tmp.replace(path)
    return path.stat().st_size


def generate(
    releases: int,
    out: Path,
    version: str = "20261101",
    seed: int = 1,
    level: int = 3,
    id_base: int = 0,
    churn: float = 0.0,
) -> dict[str, Path]:
    """Write the four files (skipping ones already generated with the same parameters).

    `id_base` shifts every id and reference (ids become id_base+1 ..), so a dump can share a store
    with another one without touching its records (the api benchmark's graph lives at 5e8+).
    `churn` > 0: a later version of the same dump (module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    gen = Gen(releases, seed, id_base)
    makers = {"artists": gen.artist, "labels": gen.label, "masters": gen.master, "releases": gen.release}
    paths = {}
    manifest = out / f"discogs_{version}.manifest.json"
    wanted: dict[str, object] = {"releases": releases, "seed": seed, "counts": gen.n}
    if id_base:
        wanted["id_base"] = id_base
    if churn:
        wanted["churn"] = churn
        wanted["relinked"] = "half of the changed masters and releases"  # older data: regenerated
    existing = json.loads(manifest.read_text()) if manifest.exists() else None
    for t, make in makers.items():
        path = out / f"discogs_{version}_{t}.xml.gz"
        paths[t] = path
        if existing == wanted and path.exists():
            continue
        records = churned(t, gen.n[t], make, churn, seed) if churn else map(make, range(1, gen.n[t] + 1))
        write(path, t, records, level)
    manifest.write_text(json.dumps(wanted))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--releases", type=int, default=100_000)
    parser.add_argument("--version", default="20261101")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--level", type=int, default=3, help="gzip level")
    parser.add_argument("--id-base", type=int, default=0, help="shift every id by this")
    parser.add_argument("--churn", type=float, default=0.0, help="a later version: share of records changed")
    args = parser.parse_args()
    started = time.perf_counter()
    paths = generate(
        args.releases, args.out, args.version, args.seed, args.level, args.id_base, churn=args.churn
    )
    print(
        json.dumps(
            {
                "generated": {t: str(p) for t, p in paths.items()},
                "counts": sizes(args.releases),
                "bytes": {t: p.stat().st_size for t, p in paths.items()},
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
