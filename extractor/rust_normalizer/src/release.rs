//! `extractor.normalize.normalize_release`, rule for rule, writing the canonical JSON directly.
//! Anything the Python normaliser would keep generically (a child or attribute it does not know)
//! or reject (a missing or unusable id) answers `None`: the caller then runs the Python one.

use std::borrow::Cow;

use crate::json::Json;
use crate::xml::Node;

const WS: &[char] = &[' ', '\t', '\r', '\n'];

/// `_clean` / `_text`: stripped of XML white space; empty -> None.
fn clean(value: Option<Cow<'_, str>>) -> Option<String> {
    let value = value?;
    let stripped = value.trim_matches(WS);
    (!stripped.is_empty()).then(|| stripped.to_owned())
}

/// `_int`: an ASCII integer, optionally signed, within 64 bits; else None.
fn int(value: Option<&str>) -> Option<i64> {
    let value = value?.trim_matches(WS);
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.strip_prefix('+').unwrap_or(value).parse::<i64>().ok()
}

/// `_ref_id`: an integer, None when missing, unparsable or 0.
fn ref_id(value: Option<&str>) -> Option<i64> {
    int(value).filter(|&n| n != 0)
}

/// `_bool`
fn boolean(value: Option<&str>) -> Option<bool> {
    match value?.trim_matches(WS).to_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

enum Qty {
    Int(i64),
    Str(String),
}

/// `_qty`: a count when it is plain digits within 64 bits, else the text.
fn qty(value: Option<Cow<'_, str>>) -> Option<Qty> {
    let value = clean(value)?;
    if value.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(number) = value.parse::<i64>() {
            return Some(Qty::Int(number));
        }
    }
    Some(Qty::Str(value))
}

/// `released_year`; Err when the answer depends on Python's idea of a Unicode digit.
fn released_year(released: Option<&str>) -> Result<Option<i64>, ()> {
    let Some(released) = released else {
        return Ok(None);
    };
    let mut chars = released.chars();
    let head: String = chars.by_ref().take(4).collect();
    if head.chars().count() < 4 || !head.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match chars.next() {
        Some(c) if !c.is_ascii() => return Err(()),
        Some(c) if c.is_ascii_digit() => return Ok(None),
        _ => {}
    }
    let year: i64 = head.parse().map_err(|_| ())?;
    Ok(if (1000..=2999).contains(&year) {
        Some(year)
    } else {
        None
    })
}

fn text_of(node: &Node) -> Option<String> {
    clean(node.text())
}

/// `_strings`
fn strings(json: &mut Json, node: &Node) -> Option<()> {
    json.begin_array();
    for child in &node.children {
        if let Some(text) = text_of(child) {
            json.item();
            json.string(&text);
        }
    }
    json.end_array();
    Some(())
}

/// `_credits`
fn credits(json: &mut Json, node: &Node) -> Option<()> {
    json.begin_array();
    for artist in &node.children {
        let (mut id, mut name, mut anv, mut join, mut role, mut tracks) =
            (None, None, None, None, None, None);
        for child in &artist.children {
            let slot = match child.name {
                b"id" => {
                    id = ref_id(child.text().as_deref());
                    continue;
                }
                b"name" => &mut name,
                b"anv" => &mut anv,
                b"join" => &mut join,
                b"role" => &mut role,
                b"tracks" => &mut tracks,
                _ => return None,
            };
            if let Some(text) = child.text() {
                *slot = clean(Some(text));
            }
        }
        json.item();
        json.begin_object();
        json.key("anv");
        json.opt_str(anv.as_deref());
        json.key("id");
        json.opt_int(id);
        json.key("join");
        json.opt_str(join.as_deref());
        json.key("name");
        json.opt_str(name.as_deref());
        json.key("role");
        json.opt_str(role.as_deref());
        json.key("tracks");
        json.opt_str(tracks.as_deref());
        json.end_object();
    }
    json.end_array();
    Some(())
}

/// `_attr_refs` (labels, series)
fn attr_refs(json: &mut Json, node: &Node) -> Option<()> {
    json.begin_array();
    for child in &node.children {
        json.item();
        json.begin_object();
        json.key("catno");
        json.opt_str(clean(child.get("catno")).as_deref());
        json.key("id");
        json.opt_int(ref_id(child.get("id").as_deref()));
        json.key("name");
        json.opt_str(clean(child.get("name")).as_deref());
        json.end_object();
    }
    json.end_array();
    Some(())
}

/// `_formats`
fn formats(json: &mut Json, node: &Node) -> Option<()> {
    json.begin_array();
    for format in &node.children {
        let mut descriptions = None;
        for child in &format.children {
            if child.name != b"descriptions" {
                return None;
            }
            descriptions = Some(child);
        }
        json.item();
        json.begin_object();
        json.key("descriptions");
        match descriptions {
            Some(child) => strings(json, child)?,
            None => {
                json.begin_array();
                json.end_array();
            }
        }
        json.key("name");
        json.opt_str(clean(format.get("name")).as_deref());
        json.key("qty");
        match qty(format.get("qty")) {
            Some(Qty::Int(n)) => json.int(n),
            Some(Qty::Str(s)) => json.string(&s),
            None => json.null(),
        }
        json.key("text");
        json.opt_str(clean(format.get("text")).as_deref());
        json.end_object();
    }
    json.end_array();
    Some(())
}

/// `_tracks` (also sub-tracks)
fn tracks(json: &mut Json, node: &Node) -> Option<()> {
    json.begin_array();
    for track in &node.children {
        let (mut position, mut title, mut duration) = (None, None, None);
        let (mut artists, mut extraartists, mut sub_tracks) = (None, None, None);
        for child in &track.children {
            let slot = match child.name {
                b"position" => &mut position,
                b"title" => &mut title,
                b"duration" => &mut duration,
                b"artists" => {
                    artists = Some(child);
                    continue;
                }
                b"extraartists" => {
                    extraartists = Some(child);
                    continue;
                }
                b"sub_tracks" => {
                    sub_tracks = Some(child);
                    continue;
                }
                _ => return None,
            };
            if let Some(text) = child.text() {
                *slot = clean(Some(text));
            }
        }
        json.item();
        json.begin_object();
        json.key("artists");
        opt_list(json, artists, credits)?;
        json.key("duration");
        json.opt_str(duration.as_deref());
        json.key("extraartists");
        opt_list(json, extraartists, credits)?;
        json.key("position");
        json.opt_str(position.as_deref());
        json.key("sub_tracks");
        opt_list(json, sub_tracks, tracks)?;
        json.key("title");
        json.opt_str(title.as_deref());
        json.end_object();
    }
    json.end_array();
    Some(())
}

/// A list-valued field: written from its element, `[]` when the record has none.
fn opt_list(
    json: &mut Json,
    node: Option<&Node>,
    write: fn(&mut Json, &Node) -> Option<()>,
) -> Option<()> {
    match node {
        Some(node) => write(json, node),
        None => {
            json.begin_array();
            json.end_array();
            Some(())
        }
    }
}

/// `_identifiers`
fn identifiers(json: &mut Json, node: &Node) -> Option<()> {
    json.begin_array();
    for child in &node.children {
        json.item();
        json.begin_object();
        json.key("description");
        json.opt_str(clean(child.get("description")).as_deref());
        json.key("type");
        json.opt_str(clean(child.get("type")).as_deref());
        json.key("value");
        json.opt_str(clean(child.get("value")).as_deref());
        json.end_object();
    }
    json.end_array();
    Some(())
}

/// `_videos`
fn videos(json: &mut Json, node: &Node) -> Option<()> {
    json.begin_array();
    for video in &node.children {
        let (mut title, mut description) = (None, None);
        for child in &video.children {
            match child.name {
                b"title" => title = text_of(child),
                b"description" => description = text_of(child),
                _ => return None,
            }
        }
        json.item();
        json.begin_object();
        json.key("description");
        json.opt_str(description.as_deref());
        json.key("duration");
        json.opt_int(int(video.get("duration").as_deref()));
        json.key("embed");
        json.opt_bool(boolean(video.get("embed").as_deref()));
        json.key("src");
        json.opt_str(clean(video.get("src")).as_deref());
        json.key("title");
        json.opt_str(title.as_deref());
        json.end_object();
    }
    json.end_array();
    Some(())
}

/// `_companies`
fn companies(json: &mut Json, node: &Node) -> Option<()> {
    json.begin_array();
    for company in &node.children {
        let (mut id, mut entity_type) = (None, None);
        let (mut name, mut catno, mut entity_type_name, mut resource_url) =
            (None, None, None, None);
        for child in &company.children {
            match child.name {
                b"id" => id = ref_id(child.text().as_deref()),
                b"entity_type" => entity_type = int(child.text().as_deref()),
                b"name" => name = text_of(child),
                b"catno" => catno = text_of(child),
                b"entity_type_name" => entity_type_name = text_of(child),
                b"resource_url" => resource_url = text_of(child),
                _ => return None,
            }
        }
        json.item();
        json.begin_object();
        json.key("catno");
        json.opt_str(catno.as_deref());
        json.key("entity_type");
        json.opt_int(entity_type);
        json.key("entity_type_name");
        json.opt_str(entity_type_name.as_deref());
        json.key("id");
        json.opt_int(id);
        json.key("name");
        json.opt_str(name.as_deref());
        json.key("resource_url");
        json.opt_str(resource_url.as_deref());
        json.end_object();
    }
    json.end_array();
    Some(())
}

/// `_images`: the attributes as they are (not stripped), sizes as integers.
fn images(json: &mut Json, node: &Node) -> Option<()> {
    json.begin_array();
    for child in &node.children {
        json.item();
        json.begin_object();
        json.key("height");
        json.opt_int(int(child.get("height").as_deref()));
        json.key("type");
        json.opt_str(child.get("type").as_deref());
        json.key("uri");
        json.opt_str(child.get("uri").as_deref());
        json.key("uri150");
        json.opt_str(child.get("uri150").as_deref());
        json.key("width");
        json.opt_int(int(child.get("width").as_deref()));
        json.end_object();
    }
    json.end_array();
    Some(())
}

/// What a release's children say, by field (the last of a repeated child wins, as in Python).
#[derive(Default)]
struct Release<'n, 'a> {
    title: Option<String>,
    country: Option<String>,
    released: Option<String>,
    notes: Option<String>,
    data_quality: Option<String>,
    master_id: Option<i64>,
    is_main_release: Option<bool>,
    artists: Option<&'n Node<'a>>,
    extraartists: Option<&'n Node<'a>>,
    labels: Option<&'n Node<'a>>,
    series: Option<&'n Node<'a>>,
    formats: Option<&'n Node<'a>>,
    genres: Option<&'n Node<'a>>,
    styles: Option<&'n Node<'a>>,
    tracklist: Option<&'n Node<'a>>,
    identifiers: Option<&'n Node<'a>>,
    videos: Option<&'n Node<'a>>,
    companies: Option<&'n Node<'a>>,
    images: Option<&'n Node<'a>>,
}

/// The release's id, its canonical JSON appended to `out`; None (and `out` as it was) where the
/// Python normaliser must decide.
pub fn normalize(release: &Node, out: &mut Vec<u8>) -> Option<i64> {
    if !release.has_only_attrs(&["id", "status"]) {
        return None;
    }
    let id = int(release.get("id").as_deref()).filter(|&n| n > 0)?;
    let mut f = Release::default();
    for child in &release.children {
        match child.name {
            b"title" => f.title = text_of(child),
            b"country" => f.country = text_of(child),
            b"released" => f.released = text_of(child),
            b"notes" => f.notes = text_of(child),
            b"data_quality" => f.data_quality = text_of(child),
            b"master_id" => {
                f.master_id = ref_id(child.text().as_deref());
                f.is_main_release = boolean(child.get("is_main_release").as_deref());
            }
            b"artists" => f.artists = Some(child),
            b"extraartists" => f.extraartists = Some(child),
            b"labels" => f.labels = Some(child),
            b"series" => f.series = Some(child),
            b"formats" => f.formats = Some(child),
            b"genres" => f.genres = Some(child),
            b"styles" => f.styles = Some(child),
            b"tracklist" => f.tracklist = Some(child),
            b"identifiers" => f.identifiers = Some(child),
            b"videos" => f.videos = Some(child),
            b"companies" => f.companies = Some(child),
            b"images" => f.images = Some(child),
            _ => return None, // Python keeps it generically (or ignores it): let Python decide
        }
    }
    let year = released_year(f.released.as_deref()).ok()?;
    let start = out.len();
    let mut json = Json::wrap(std::mem::take(out));
    let written = write(&mut json, release, &f, id, year);
    *out = json.out;
    if written.is_none() {
        out.truncate(start);
    }
    written.map(|()| id)
}

fn write(json: &mut Json, release: &Node, f: &Release, id: i64, year: Option<i64>) -> Option<()> {
    json.begin_object();
    json.key("artists");
    opt_list(json, f.artists, credits)?;
    json.key("companies");
    opt_list(json, f.companies, companies)?;
    json.key("country");
    json.opt_str(f.country.as_deref());
    json.key("data_quality");
    json.opt_str(f.data_quality.as_deref());
    json.key("extraartists");
    opt_list(json, f.extraartists, credits)?;
    json.key("formats");
    opt_list(json, f.formats, formats)?;
    json.key("genres");
    opt_list(json, f.genres, strings)?;
    json.key("id");
    json.int(id);
    json.key("identifiers");
    opt_list(json, f.identifiers, identifiers)?;
    json.key("images");
    opt_list(json, f.images, images)?;
    json.key("is_main_release");
    json.opt_bool(f.is_main_release);
    json.key("labels");
    opt_list(json, f.labels, attr_refs)?;
    json.key("master_id");
    json.opt_int(f.master_id);
    json.key("notes");
    json.opt_str(f.notes.as_deref());
    json.key("released");
    json.opt_str(f.released.as_deref());
    json.key("series");
    opt_list(json, f.series, attr_refs)?;
    json.key("status");
    json.opt_str(clean(release.get("status")).as_deref());
    json.key("styles");
    opt_list(json, f.styles, strings)?;
    json.key("title");
    json.opt_str(f.title.as_deref());
    json.key("tracklist");
    opt_list(json, f.tracklist, tracks)?;
    json.key("videos");
    opt_list(json, f.videos, videos)?;
    json.key("year");
    json.opt_int(year);
    json.end_object();
    Some(())
}
