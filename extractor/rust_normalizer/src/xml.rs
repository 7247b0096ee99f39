//! A strict reader for the XML of one dump record into a small tree.
//!
//! It accepts a conservative subset of well-formed XML (elements, quoted attributes, text with the
//! five predefined entities and character references, UTF-8) and answers `None` for anything
//! else: comments, CDATA, processing instructions, other entities, control characters, names
//! outside `[A-Za-z_][A-Za-z0-9_.-]*`, duplicate attributes, mismatched tags. `None` never means
//! "broken": the caller then hands the record to lxml, which decides. So this reader must never
//! accept what lxml refuses, and must read what it accepts exactly as lxml does.

use std::borrow::Cow;

/// One element: its name, its attributes (raw, still escaped) and children, and the raw text
/// before its first child (what lxml calls `.text`).
pub struct Node<'a> {
    pub name: &'a [u8],
    attrs: Vec<(&'a [u8], &'a str)>,
    text: Option<&'a str>,
    pub children: Vec<Node<'a>>,
}

impl<'a> Node<'a> {
    /// The attribute's value as lxml gives it: entities decoded, literal tab, CR and LF turned
    /// into spaces (XML attribute-value normalisation).
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        let raw = self
            .attrs
            .iter()
            .find(|(key, _)| *key == name.as_bytes())?
            .1;
        decode(raw, true)
    }

    pub fn has_only_attrs(&self, allowed: &[&str]) -> bool {
        self.attrs
            .iter()
            .all(|(key, _)| allowed.iter().any(|name| name.as_bytes() == *key))
    }

    /// lxml's `.text`: the text before the first child, None when there is none.
    pub fn text(&self) -> Option<Cow<'a, str>> {
        self.text.and_then(|raw| decode(raw, false))
    }
}

const XML_WS: &[u8] = b" \t\r\n";
/// Deeper nesting is left to lxml (a release's deepest field is about 8 levels down); the reader
/// recurses, so this also bounds its stack.
const MAX_DEPTH: usize = 64;

/// The release record of one piece: optional whitespace, `<release ...>` and its content; the
/// record's closing tag is the piece's end (the caller cut the chunk there).
pub fn parse_piece<'a>(piece: &'a [u8], tag: &[u8]) -> Option<Node<'a>> {
    let text = std::str::from_utf8(piece).ok()?;
    let mut reader = Reader {
        s: text,
        b: piece,
        i: 0,
        depth: 0,
    };
    reader.skip_ws();
    let (mut root, empty) = reader.start_tag()?;
    if empty || root.name != tag {
        return None;
    }
    reader.content(&mut root, true)?;
    Some(root)
}

struct Reader<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| XML_WS.contains(&c)) {
            self.i += 1;
        }
        self.i - start
    }

    fn name(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        match self.peek()? {
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => self.i += 1,
            _ => return None,
        }
        while let Some(c) = self.peek() {
            match c {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => self.i += 1,
                _ => break,
            }
        }
        Some(&self.b[start..self.i])
    }

    /// `<name attr="v" ...>` or `/>`; the reader stands on `<`.
    fn start_tag(&mut self) -> Option<(Node<'a>, bool)> {
        if self.peek()? != b'<' {
            return None;
        }
        self.i += 1;
        let name = self.name()?;
        let mut attrs: Vec<(&'a [u8], &'a str)> = Vec::new();
        loop {
            let spaced = self.skip_ws() > 0;
            let empty = match self.peek()? {
                b'>' => false,
                b'/' if self.b.get(self.i + 1) == Some(&b'>') => {
                    self.i += 1;
                    true
                }
                _ if spaced => {
                    self.attribute(&mut attrs)?;
                    continue;
                }
                _ => return None,
            };
            self.i += 1;
            let node = Node {
                name,
                attrs,
                text: None,
                children: Vec::new(),
            };
            return Some((node, empty));
        }
    }

    /// `name="value"` (or single quotes) into `attrs`; the reader stands on the name.
    fn attribute(&mut self, attrs: &mut Vec<(&'a [u8], &'a str)>) -> Option<()> {
        let key = self.name()?;
        self.skip_ws();
        if self.peek()? != b'=' {
            return None;
        }
        self.i += 1;
        self.skip_ws();
        let quote = self.peek()?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        self.i += 1;
        let start = self.i;
        let special = self.scan(quote)?;
        if self.peek()? != quote {
            return None; // a `<` in an attribute value
        }
        let value = &self.s[start..self.i];
        self.i += 1;
        if attrs.iter().any(|(k, _)| *k == key) || special && decode(value, true).is_none() {
            return None; // a duplicate, or an entity this reader does not know
        }
        attrs.push((key, value));
        Some(())
    }

    /// Move to the next `stop` or `<` (or the end), over text or an attribute value; whether it
    /// holds a byte `decode` must see (`&`, white space other than a space). None for what XML
    /// forbids there or this reader leaves to lxml: control characters, U+FFFE and U+FFFF, `]]>`.
    fn scan(&mut self, stop: u8) -> Option<bool> {
        let mut special = false;
        while let Some(b) = self.peek() {
            match b {
                b'<' => break,
                _ if b == stop => break,
                b'&' | b'\t' | b'\n' | b'\r' => special = true,
                0..=0x1f => return None,
                b']' if self.b[self.i..].starts_with(b"]]>") => return None,
                0xEF if matches!(
                    self.b.get(self.i + 1..self.i + 3),
                    Some([0xBF, 0xBE | 0xBF])
                ) =>
                {
                    return None
                }
                _ => {}
            }
            self.i += 1;
        }
        Some(special)
    }

    /// The element's children and text up to its end tag (or, for the record itself, `root`, the
    /// end of the piece).
    fn content(&mut self, node: &mut Node<'a>, root: bool) -> Option<()> {
        loop {
            let start = self.i;
            let special = self.scan(b'<')?;
            if self.i > start {
                let raw = &self.s[start..self.i];
                if special {
                    decode(raw, false)?; // every text must be well formed, read or not
                }
                if node.children.is_empty() && node.text.is_none() {
                    node.text = Some(raw);
                }
            }
            if self.peek().is_none() {
                // Only the record may run to the end of its piece, whose end tag follows.
                return if root { Some(()) } else { None };
            }
            if self.b.get(self.i + 1) == Some(&b'/') {
                if root {
                    return None; // the record's own end tag is where the piece was cut
                }
                self.i += 2;
                let name = self.name()?;
                self.skip_ws();
                if name != node.name || self.peek()? != b'>' {
                    return None;
                }
                self.i += 1;
                return Some(());
            }
            let (mut child, empty) = self.start_tag()?;
            if !empty {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None; // no release nests this deep; lxml and Python decide
                }
                self.content(&mut child, false)?;
                self.depth -= 1;
            }
            node.children.push(child);
        }
    }
}

/// Decode entities and character references, normalise line ends (and, in attributes, white
/// space) as an XML parser does; None for an unknown entity or a character XML does not allow.
fn decode(text: &str, attribute: bool) -> Option<Cow<'_, str>> {
    let special = |b: &u8| matches!(b, b'&' | b'\r') || attribute && matches!(b, b'\t' | b'\n');
    if !text.as_bytes().iter().any(special) {
        return Some(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match c {
            '&' => {
                let end = rest.find(';')?;
                out.push(entity(&rest[1..end])?);
                rest = &rest[end + 1..];
                continue;
            }
            '\r' => {
                out.push(if attribute { ' ' } else { '\n' });
                if rest.as_bytes().get(1) == Some(&b'\n') {
                    rest = &rest[1..]; // CR LF is one line end
                }
            }
            '\t' | '\n' if attribute => out.push(' '),
            _ => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(Cow::Owned(out))
}

fn entity(name: &str) -> Option<char> {
    let code = match name {
        "amp" => return Some('&'),
        "lt" => return Some('<'),
        "gt" => return Some('>'),
        "quot" => return Some('"'),
        "apos" => return Some('\''),
        _ if name.starts_with("#x") => parse_digits(&name[2..], 16)?,
        _ if name.starts_with('#') => parse_digits(&name[1..], 10)?,
        _ => return None,
    };
    let allowed =
        matches!(code, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF);
    if allowed {
        char::from_u32(code)
    } else {
        None
    }
}

fn parse_digits(digits: &str, radix: u32) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}
