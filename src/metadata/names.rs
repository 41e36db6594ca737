//! A page of names (tags, repositories) kept as the database joins them: one string, the
//! names separated by newlines, in byte-wise order. A `tags/list` page of 500 tags is then
//! one allocation from the database to the JSON answer instead of 500 (measured: splitting
//! into `String`s, serializing them and freeing them was a fifth of such an answer's CPU).
//! (It is one value from the database too: sqlx hands each SQLite result row across threads
//! separately, so a page of names is one row.) Names never contain a newline: tags and
//! repository names are validated on the way in.

use serde::ser::{Serialize, SerializeSeq, Serializer};

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
        let mut len = 1;
        let mut sorted = true;
        let mut previous: Option<&str> = None;
        for name in joined.split('\n') {
            if let Some(previous) = previous {
                len += 1;
                sorted &= previous < name;
            }
            previous = Some(name);
        }
        if sorted {
            return Names { joined, len };
        }
        let mut names: Vec<&str> = joined.split('\n').collect();
        names.sort_unstable();
        Names {
            joined: names.join("\n"),
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
        let joined = if self.len == 0 {
            None
        } else {
            Some(&self.joined)
        };
        joined.into_iter().flat_map(|joined| joined.split('\n'))
    }

    /// The last name.
    pub fn last(&self) -> Option<&str> {
        (self.len > 0).then(|| self.joined.rsplit('\n').next().unwrap_or_default())
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
        // The byte offset of the n-th newline ends the n-th name.
        if let Some((end, _)) = self.joined.match_indices('\n').nth(n - 1) {
            self.joined.truncate(end);
            self.len = n;
        }
    }
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

/// A JSON array of strings.
impl Serialize for Names {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for name in self.iter() {
            seq.serialize_element(name)?;
        }
        seq.end()
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
    fn serializes_as_a_json_array() {
        let n: Names = ["a".to_string(), "b-1".to_string()].into_iter().collect();
        assert_eq!(serde_json::to_string(&n).unwrap(), r#"["a","b-1"]"#);
        assert_eq!(serde_json::to_string(&Names::default()).unwrap(), "[]");
    }
}
