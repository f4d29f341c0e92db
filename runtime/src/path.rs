//! Lexical path normalization, for `path` arguments.
//!
//! A path argument is decided, and forwarded to the tool, in its normal form: `.` segments and
//! empty segments (repeated `/`) are dropped, and `..` removes the segment before it. A path keeps
//! whether it is absolute (a leading `/`). A `..` with nothing before it to remove — a path that
//! climbs above its root, such as `docs/../../etc/passwd` — has no normal form: the request is
//! invalid. The normal form of an empty relative path is `.`.
//!
//! Normalization is lexical: it never looks at a file system (a symbolic link can still lead
//! elsewhere; that is the tool's to prevent). It allocates nothing: [`normalize`] writes into
//! memory the caller provides, which needs at most as many bytes as the input (or one, for `.`).

/// Whether `path` is already in normal form (what [`normalize`] would return for it): `/`, `.`,
/// or segments between single `/`s (one leading `/` allowed, none trailing), none of them empty,
/// `.` or `..`. One pass over the bytes: a gate checks every `path` element of every list with
/// it, so it is on the hot path of list calls.
pub fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes == b"/" || bytes == b"." {
        return true;
    }
    let relative = bytes.strip_prefix(b"/").unwrap_or(bytes);
    // A segment of `len` bytes, `dots` of them `.`, is a name unless empty, `.` or `..`.
    let name = |len: usize, dots: usize| len > 0 && !(dots == len && len <= 2);
    let (mut len, mut dots) = (0usize, 0usize);
    for &byte in relative {
        if byte == b'/' {
            if !name(len, dots) {
                return false;
            }
            (len, dots) = (0, 0);
        } else {
            len += 1;
            dots += usize::from(byte == b'.');
        }
    }
    name(len, dots)
}

/// Writes the normal form of `path` into `out` and returns it; `None` when the path climbs above
/// its root, or when `out` is too small (it never needs more than `max(path.len(), 1)` bytes).
pub fn normalize<'o>(path: &str, out: &'o mut [u8]) -> Option<&'o str> {
    let absolute = path.starts_with('/');
    let root = usize::from(absolute);
    let mut len = 0usize;
    if absolute {
        *out.get_mut(0)? = b'/';
        len = 1;
    }
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                // Remove the last segment written (and the `/` before it); none left: a climb.
                if len == root {
                    return None;
                }
                let written = out.get(root..len)?;
                let cut = written.iter().rposition(|&b| b == b'/').map_or(0, |i| i);
                len = root + cut;
            }
            _ => {
                if len > root {
                    *out.get_mut(len)? = b'/';
                    len += 1;
                }
                let end = len.checked_add(segment.len())?;
                out.get_mut(len..end)?.copy_from_slice(segment.as_bytes());
                len = end;
            }
        }
    }
    if len == 0 {
        *out.get_mut(0)? = b'.';
        len = 1;
    }
    // Whole UTF-8 segments of a `&str` were copied between `/` bytes: the result is UTF-8.
    core::str::from_utf8(out.get(..len)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_lexically() {
        for (path, expected) in [
            ("docs/readme.md", Some("docs/readme.md")),
            ("docs//./readme.md", Some("docs/readme.md")),
            ("docs/sub/../readme.md", Some("docs/readme.md")),
            ("docs/", Some("docs")),
            ("./docs", Some("docs")),
            ("", Some(".")),
            (".", Some(".")),
            ("docs/..", Some(".")),
            ("/", Some("/")),
            ("//etc///passwd/", Some("/etc/passwd")),
            ("/a/../..", None),
            ("docs/../../etc/passwd", None),
            ("..", None),
            ("../x", None),
            ("/..", None),
            ("a..b/.x/..y", Some("a..b/.x/..y")),
            ("é/./ü", Some("é/ü")),
        ] {
            let mut out = [0u8; 64];
            assert_eq!(normalize(path, &mut out), expected, "{path}");
            if let Some(normal) = expected {
                assert!(is_normal(normal), "{normal}");
                assert_eq!(is_normal(path), path == normal, "{path}");
            }
        }
    }

    /// `is_normal` says exactly whether `normalize` leaves a path as it is, for every string of
    /// up to seven of `/`, `.` and `a` (3,280 strings).
    #[test]
    fn is_normal_is_normalize_leaving_the_path_unchanged() {
        let alphabet = [b'/', b'.', b'a'];
        let mut checked = 0;
        for len in 0..=7u32 {
            for code in 0..3usize.pow(len) {
                let mut text = [0u8; 7];
                let mut rest = code;
                for byte in text.iter_mut().take(len as usize) {
                    *byte = alphabet[rest % 3];
                    rest /= 3;
                }
                let path = core::str::from_utf8(&text[..len as usize]).unwrap_or("");
                let mut out = [0u8; 8];
                let same = normalize(path, &mut out) == Some(path);
                assert_eq!(is_normal(path), same, "{path}");
                checked += 1;
            }
        }
        assert_eq!(checked, 3_280);
    }

    #[test]
    fn the_output_needs_no_more_than_the_input() {
        let mut out = [0u8; 5];
        assert_eq!(normalize("a/./b", &mut out), Some("a/b"));
        let mut one = [0u8; 1];
        assert_eq!(normalize("", &mut one), Some("."));
        assert_eq!(normalize("abcdef", &mut out), None);
    }
}
