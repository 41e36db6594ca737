//! A page of names (tags, repositories) kept as the database joins them: one string, the
//! names separated by newlines, in byte-wise order. A `tags/list` page of 500 tags is then
//! one allocation from the database to the JSON answer instead of 500 (measured: splitting
//! into `String`s, serializing them and freeing them was a fifth of such an answer's CPU).
//! (It is one value from the database too: sqlx hands each SQLite result row across threads
//! separately, so a page of names is one row.) Names never contain a newline: tags and
//! repository names are validated on the way in.

/// Names in byte-wise order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// The names joined by `\n`; empty when there are none.
    joined: String,
    len: usize,
}

impl Names {
    /// From the names joined by newlines, in any order (an SQL aggregate does not promise
    /// one): sorted here unless they already are.
    pub fn from_joined(joined: String) -> Self {
        if joined.is_empty() {
            return Names::default();
        }
        let mut len = 0;
        let mut sorted = true;
        let mut previous: Option<&str> = None;
        for name in split(&joined) {
            len += 1;
            if let Some(previous) = previous {
                sorted &= previous < name;
            }
            previous = Some(name);
        }
        if sorted {
            return Names { joined, len };
        }
        let mut names: Vec<&str> = split(&joined).collect();
        names.sort_unstable();
        Names {
            joined: names.join("\n"),
            len,
        }
    }

    /// The page of `all` (every name, joined by newlines in byte-wise order, as a cached
    /// tag list holds them) that follows `last`: at most `limit` names. The page is one
    /// stretch of `all`, found by a binary search for `last`, so a page costs its own
    /// length, not the list's.
    pub fn page_of(all: &str, last: Option<&str>, limit: usize) -> Self {
        let start = last.map_or(0, |last| first_after(all, last));
        let rest = all.get(start..).unwrap_or_default();
        if rest.is_empty() || limit == 0 {
            return Names::default();
        }
        let (end, len) = names_end(rest, limit);
        Names {
            joined: rest[..end].to_string(),
            len,
        }
    }

    /// How many names there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let joined = if self.len == 0 { "" } else { &self.joined };
        split(joined)
    }

    /// The last name.
    pub fn last(&self) -> Option<&str> {
        (self.len > 0).then(|| match memchr::memrchr(b'\n', self.joined.as_bytes()) {
            Some(newline) => &self.joined[newline + 1..],
            None => &self.joined,
        })
    }

    /// Keeps the first `n` names.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        if n == 0 {
            *self = Names::default();
            return;
        }
        let (end, len) = names_end(&self.joined, n);
        self.joined.truncate(end);
        self.len = len;
    }

    /// Appends the names to `out` as a JSON array of strings, as serde_json would write
    /// them, in one pass over the joined names: tags and repository names never need
    /// escaping (their grammars allow none of `"`, `\\` and control characters), so the
    /// array is the names with `","` for each newline. Names that would need escaping
    /// (never written by Ferry) go through serde_json one by one.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mark = out.len();
        out.reserve(self.joined.len() + 3 * self.len + 4);
        out.push(b'[');
        if self.len > 0 {
            out.push(b'"');
            for &b in self.joined.as_bytes() {
                match b {
                    b'\n' => out.extend_from_slice(b"\",\""),
                    b'"' | b'\\' | 0..=0x1f => {
                        out.truncate(mark);
                        let names: Vec<&str> = self.iter().collect();
                        // Serializing strings into a vector cannot fail.
                        let _ = serde_json::to_writer(&mut *out, &names);
                        return;
                    }
                    _ => out.push(b),
                }
            }
            out.push(b'"');
        }
        out.push(b']');
    }
}

/// The names of `joined` (joined by newlines; none if empty).
fn split(joined: &str) -> impl Iterator<Item = &str> {
    let mut rest = (!joined.is_empty()).then_some(joined);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b'\n', current.as_bytes()) {
            Some(newline) => {
                rest = Some(&current[newline + 1..]);
                Some(&current[..newline])
            }
            None => rest.take(),
        }
    })
}

/// Where the first `n` (at least one) names of `joined` (not empty) end, and how many
/// names that is (fewer than `n` when `joined` holds fewer).
fn names_end(joined: &str, n: usize) -> (usize, usize) {
    let mut count = 1;
    for newline in memchr::memchr_iter(b'\n', joined.as_bytes()) {
        if count >= n {
            return (newline, count);
        }
        count += 1;
    }
    (joined.len(), count)
}

/// The byte offset in `all` (names joined by newlines, in order) where the first name
/// greater than `last` begins; `all.len()` when there is none.
fn first_after(all: &str, last: &str) -> usize {
    let bytes = all.as_bytes();
    // Invariant: `low` begins a line, every name before `low` is at most `last`, and every
    // name that begins at or after `high` is greater.
    let (mut low, mut high) = (0, bytes.len());
    while low < high {
        let middle = low + (high - low) / 2;
        let begin = bytes[low..middle]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(low, |i| low + i + 1);
        let end = bytes[begin..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| begin + i);
        if &bytes[begin..end] <= last.as_bytes() {
            low = (end + 1).min(bytes.len());
        } else {
            high = begin;
        }
    }
    low
}

impl FromIterator<String> for Names {
    /// Names already in byte-wise order.
    fn from_iter<I: IntoIterator<Item = String>>(names: I) -> Self {
        let mut joined = String::new();
        let mut len = 0;
        for name in names {
            if len > 0 {
                joined.push('\n');
            }
            joined.push_str(&name);
            len += 1;
        }
        Names { joined, len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(joined: &str) -> Vec<String> {
        Names::from_joined(joined.to_string())
            .iter()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn joined_names_come_out_sorted() {
        assert_eq!(names("a\nb\nc"), ["a", "b", "c"]);
        assert_eq!(names("c\na\nB"), ["B", "a", "c"]);
        assert!(names("").is_empty());
        assert_eq!(names("only"), ["only"]);
        assert_eq!(Names::from_joined("c\na".into()).len(), 2);
    }

    #[test]
    fn truncate_and_last() {
        let mut n = Names::from_joined("a\nb\nc".into());
        assert_eq!(n.last(), Some("c"));
        n.truncate(5);
        assert_eq!(n.len(), 3);
        n.truncate(2);
        assert_eq!(n.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(n.last(), Some("b"));
        n.truncate(0);
        assert!(n.is_empty());
        assert_eq!(n.last(), None);
        assert_eq!(n.iter().count(), 0);
    }

    #[test]
    fn a_page_of_a_whole_list_is_the_names_after_last() {
        let all = "a\nb-1\nb-2\nc\nd";
        let every: Vec<&str> = all.split('\n').collect();
        let afters = [
            "", "0", "a", "a0", "b", "b-1", "b-15", "b-2", "c", "cc", "d", "e", "z",
        ];
        for last in afters {
            for limit in 0..7 {
                let want: Vec<&str> = every
                    .iter()
                    .copied()
                    .filter(|name| last.is_empty() || *name > last)
                    .take(limit)
                    .collect();
                let last = (!last.is_empty()).then_some(last);
                let page = Names::page_of(all, last, limit);
                assert_eq!(page.iter().collect::<Vec<_>>(), want, "{last:?} {limit}");
                assert_eq!(page.len(), want.len(), "{last:?} {limit}");
            }
        }
        assert!(Names::page_of("", Some("a"), 10).is_empty());
        assert_eq!(Names::page_of("only", None, 10).len(), 1);
    }

    #[test]
    fn writes_the_json_serde_would() {
        let cases = [
            "",
            "a",
            "a\nb-1\nv1.0",
            "caf\u{e9}\nz",
            "a\"b\nc\\d\ne\u{1}",
        ];
        for joined in cases {
            let names = Names::from_joined(joined.to_string());
            let mut out = b"x".to_vec();
            names.write_json(&mut out);
            let want = serde_json::to_string(&names.iter().collect::<Vec<_>>()).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("x{want}"),
                "{joined:?}"
            );
        }
    }

    #[test]
    fn serializes_as_a_json_array() {
        let json = |names: &Names| {
            let mut out = Vec::new();
            names.write_json(&mut out);
            String::from_utf8(out).unwrap()
        };
        let n: Names = ["a".to_string(), "b-1".to_string()].into_iter().collect();
        assert_eq!(json(&n), r#"["a","b-1"]"#);
        assert_eq!(json(&Names::default()), "[]");
    }
}
