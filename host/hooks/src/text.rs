//! Size bounds on text a plugin hands the host (error strings, log
//! messages, stdout/stderr lines, notification payloads): cut as soon as the
//! host holds the text, with a marker saying how long it was.

/// Error results (`init` and `on-events`), failure messages, log messages
/// and stdout/stderr lines keep at most this many bytes.
pub const MAX_TEXT: usize = 4096;
/// Notification payloads keep at most this many bytes.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// The longest marker [`bound`] appends: a cut text is at most `max +
/// MAX_MARKER` bytes long.
pub const MAX_MARKER: usize = 64;

/// Cuts `text` to at most `max` bytes (on a character boundary) and appends
/// a marker naming the original length. Returns whether it cut. The cut
/// string's spare capacity is released, so a 10 MB string does not live on
/// as a 10 MB allocation.
pub fn bound(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let total = text.len();
    text.truncate(floor_char_boundary(text, max));
    text.push_str(&marker(total));
    text.shrink_to_fit();
    true
}

/// The marker appended to cut text.
pub fn marker(total: usize) -> String {
    format!("… [truncated, {total} bytes in all]")
}

/// [`bound`] for text borrowed from elsewhere.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut out = text[..floor_char_boundary(text, max)].to_owned();
    out.push_str(&marker(text.len()));
    out
}

fn floor_char_boundary(text: &str, max: usize) -> usize {
    let mut cut = max.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        let mut s = "hello".to_owned();
        assert!(!bound(&mut s, 5));
        assert_eq!(s, "hello");
    }

    #[test]
    fn long_text_is_cut_with_a_marker() {
        let mut s = "x".repeat(10_000_000);
        assert!(bound(&mut s, 4096));
        assert_eq!(
            s,
            format!("{}… [truncated, 10000000 bytes in all]", "x".repeat(4096))
        );
        assert!(s.capacity() < 8192, "the big allocation is released");
    }

    #[test]
    fn the_marker_fits_its_bound() {
        assert!(marker(usize::MAX).len() <= MAX_MARKER);
    }

    #[test]
    fn cut_respects_character_boundaries() {
        // 'é' is two bytes: a cut at 3 would split the second one.
        let mut s = "éééé".to_owned();
        assert!(bound(&mut s, 3));
        assert!(s.starts_with("é… [truncated, 8 bytes"), "{s}");
        assert_eq!(bounded("éééé", 3), s);
    }
}
