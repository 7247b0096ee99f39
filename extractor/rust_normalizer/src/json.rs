//! Canonical JSON exactly as `orjson.dumps(record, option=OPT_SORT_KEYS)` writes it: no spaces,
//! keys in the order the caller writes them (sorted by the caller), strings escaped as orjson
//! escapes them (`"`, `\` and control characters only; `\b \t \n \f \r` short, others `\u00XX`).

pub struct Json {
    pub out: Vec<u8>,
    first: bool,
}

impl Json {
    /// Writes after what `out` already holds (the chunk's output buffer: no buffer per record).
    pub fn wrap(out: Vec<u8>) -> Self {
        Json { out, first: true }
    }

    pub fn begin_object(&mut self) {
        self.out.push(b'{');
        self.first = true;
    }

    pub fn end_object(&mut self) {
        self.out.push(b'}');
        self.first = false;
    }

    pub fn begin_array(&mut self) {
        self.out.push(b'[');
        self.first = true;
    }

    pub fn end_array(&mut self) {
        self.out.push(b']');
        self.first = false;
    }

    /// Before an array item.
    pub fn item(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// Before an object member's value.
    pub fn key(&mut self, key: &str) {
        self.item();
        self.string(key);
        self.out.push(b':');
        self.first = true;
    }

    pub fn null(&mut self) {
        self.out.extend_from_slice(b"null");
        self.first = false;
    }

    pub fn int(&mut self, value: i64) {
        self.out.extend_from_slice(value.to_string().as_bytes());
        self.first = false;
    }

    pub fn opt_int(&mut self, value: Option<i64>) {
        match value {
            Some(v) => self.int(v),
            None => self.null(),
        }
    }

    pub fn opt_bool(&mut self, value: Option<bool>) {
        match value {
            Some(true) => self.out.extend_from_slice(b"true"),
            Some(false) => self.out.extend_from_slice(b"false"),
            None => self.out.extend_from_slice(b"null"),
        }
        self.first = false;
    }

    pub fn opt_str(&mut self, value: Option<&str>) {
        match value {
            Some(v) => self.string(v),
            None => self.null(),
        }
    }

    pub fn string(&mut self, value: &str) {
        self.out.push(b'"');
        let bytes = value.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let short: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\x08' => b"\\b",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                b'\x0c' => b"\\f",
                b'\r' => b"\\r",
                0..=0x1f => b"",
                _ => continue,
            };
            self.out.extend_from_slice(&bytes[start..i]);
            if short.is_empty() {
                self.out
                    .extend_from_slice(format!("\\u{:04x}", b).as_bytes());
            } else {
                self.out.extend_from_slice(short);
            }
            start = i + 1;
        }
        self.out.extend_from_slice(&bytes[start..]);
        self.out.push(b'"');
        self.first = false;
    }
}
