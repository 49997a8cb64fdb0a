//! ARCHITECTURE.md names each step of a leadership event's path as
//! `` `file` `fn name` `` (or `` `macro_rules! name` ``): every such file must
//! exist and define that item, so the page cannot drift from the code.

use std::path::Path;

#[test]
fn every_step_of_the_event_path_names_code_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let page = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    // `path` `fn name` pairs; the path may end a line and the item start the next.
    let text = page.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut checked = 0;
    let mut missing = Vec::new();
    for (i, _) in text.match_indices("` `") {
        let before = &text[..i];
        let Some(start) = before.rfind('`') else {
            continue;
        };
        let file = &before[start + 1..];
        if !(file.ends_with(".rs") && file.contains('/')) {
            continue;
        }
        let after = &text[i + 3..];
        let Some(end) = after.find('`') else { continue };
        let item = &after[..end];
        if !(item.starts_with("fn ") || item.starts_with("macro_rules! ")) {
            continue;
        }
        let source = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        let defined = if let Some(name) = item.strip_prefix("fn ") {
            source.contains(&format!("fn {name}(")) || source.contains(&format!("fn {name}<"))
        } else {
            source.contains(item)
        };
        if !defined {
            missing.push(format!("{file}: {item}"));
        }
        checked += 1;
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names code that is gone: {missing:?}"
    );
    assert!(
        checked >= 14,
        "only {checked} references found: the page's format changed"
    );
}
