//! Native fast path of `extractor.normalize` for releases, about 90% of a dump's parse time.
//!
//! `dg_normalize_releases` takes a chunk of whole `<release>` records (what the chunked parser
//! hands a pool worker), cuts it at every `</release>` as `extractor.chunked.split_records`
//! does, and for each piece writes the release's id and canonical JSON (the bytes the record's
//! sha256 covers), or id 0 where the Python normaliser must decide: anything unusual, unknown or
//! broken. So the output for a piece is either byte for byte what Python would make, or a
//! request to let Python make it. Loaded through ctypes (extractor.native); no dependencies.

mod json;
mod release;
mod xml;

const END_TAG: &[u8] = b"</release>";
const ENTRY: usize = 16; // i64 id, u32 offset, u32 length

/// The pieces of a chunk: the bytes before each end tag; None when text other than white space
/// follows the last one (not a chunk of whole records).
fn split(chunk: &[u8]) -> Option<Vec<&[u8]>> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + END_TAG.len() <= chunk.len() {
        if chunk[i] == b'<' && &chunk[i..i + END_TAG.len()] == END_TAG {
            pieces.push(&chunk[start..i]);
            i += END_TAG.len();
            start = i;
        } else {
            i += 1;
        }
    }
    // Python's bytes.strip(): ASCII white space, vertical tab and form feed included.
    let tail_blank = chunk[start..]
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c));
    tail_blank.then_some(pieces)
}

/// The number of pieces and the output buffer: `count` entries of (id, offset, length), then the
/// JSON texts (offsets count from the end of the entries); id 0 = let Python normalise this piece.
/// One buffer for the chunk, JSON written straight into it: a buffer per record and a copy of the
/// texts after the entries cost a fifth of the time (page faults of fresh allocations).
pub fn normalize_chunk(chunk: &[u8]) -> Option<(usize, Vec<u8>)> {
    let pieces = split(chunk)?;
    let count = pieces.len();
    let head = count * ENTRY;
    let mut out = Vec::with_capacity(head + chunk.len() + chunk.len() / 8);
    out.resize(head, 0);
    for (n, piece) in pieces.into_iter().enumerate() {
        let start = out.len();
        let id = xml::parse_piece(piece, b"release")
            .and_then(|node| release::normalize(&node, &mut out))
            .unwrap_or(0); // nothing written then
        let offset = u32::try_from(start - head).ok()?;
        let length = u32::try_from(out.len() - start).ok()?;
        let entry = &mut out[n * ENTRY..(n + 1) * ENTRY];
        entry[..8].copy_from_slice(&id.to_le_bytes());
        entry[8..12].copy_from_slice(&offset.to_le_bytes());
        entry[12..].copy_from_slice(&length.to_le_bytes());
    }
    Some((count, out))
}

/// C entry point. Returns the number of pieces and hands over the buffer through `out`/`out_len`
/// (free it with `dg_free`); -1 when the chunk is not one of whole records.
///
/// # Safety
/// `chunk` must point to `len` readable bytes; `out` and `out_len` must be writable.
#[no_mangle]
pub unsafe extern "C" fn dg_normalize_releases(
    chunk: *const u8,
    len: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> i64 {
    let input = std::slice::from_raw_parts(chunk, len);
    let Some((count, buffer)) = normalize_chunk(input) else {
        return -1;
    };
    let boxed = buffer.into_boxed_slice();
    *out_len = boxed.len();
    *out = Box::into_raw(boxed).cast::<u8>();
    count as i64
}

/// Free a buffer returned by `dg_normalize_releases`.
///
/// # Safety
/// `ptr`/`len` must be exactly what `dg_normalize_releases` returned, freed once.
#[no_mangle]
pub unsafe extern "C" fn dg_free(ptr: *mut u8, len: usize) {
    if !ptr.is_null() {
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)));
    }
}
